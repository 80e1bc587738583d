package deploy

import (
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
)

// What `make image` tags when IMAGE is not given: the DaemonSet's image.
func makefileImage(tb testing.TB) string {
	tb.Helper()
	m := regexp.MustCompile(`(?m)^IMAGE \?= (\S+)$`).FindSubmatch(readFile(tb, "../Makefile"))
	if m == nil {
		tb.Fatal("Makefile: no `IMAGE ?= ...` line")
	}
	return string(m[1])
}

// imageConfig is what deploy/Containerfile sets for the running container.
type imageConfig struct {
	Entrypoint []string
	Cmd        []string
	User       string
	Expose     []int
}

// containerfileConfig reads the exec-form ENTRYPOINT and CMD, USER and
// EXPOSE of deploy/Containerfile. The image test checks the same against
// what podman built, so this reading cannot drift from the real one.
func containerfileConfig(tb testing.TB) imageConfig {
	tb.Helper()
	src := readFile(tb, "Containerfile")
	var c imageConfig
	execForm := func(instr string) []string {
		m := regexp.MustCompile(`(?m)^`+instr+` (\[.*\])$`).FindAllSubmatch(src, -1)
		if len(m) != 1 {
			tb.Fatalf("Containerfile: want one exec-form %s, found %d", instr, len(m))
		}
		var v []string
		if err := json.Unmarshal(m[0][1], &v); err != nil {
			tb.Fatalf("Containerfile: %s: %v", instr, err)
		}
		return v
	}
	c.Entrypoint = execForm("ENTRYPOINT")
	c.Cmd = execForm("CMD")
	if m := regexp.MustCompile(`(?m)^USER (\S+)$`).FindSubmatch(src); m != nil {
		c.User = string(m[1])
	}
	for _, m := range regexp.MustCompile(`(?m)^EXPOSE (\d+)$`).FindAllSubmatch(src, -1) {
		p, _ := strconv.Atoi(string(m[1]))
		c.Expose = append(c.Expose, p)
	}
	return c
}
