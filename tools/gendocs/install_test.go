package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcptrace/tcptrace/cmd"
)

// TestGenerate writes the pages and completions into a temporary directory
// from the real command tree.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	if err := generate(cmd.NewRootCommand(), dir, "v9.9.9"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"man1/tcptrace.1", "man1/tcptrace-check.1", "bash/tcptrace", "zsh/_tcptrace", "fish/tcptrace.fish"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("tcptrace")) {
			t.Errorf("%s does not name tcptrace", name)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, "man1/tcptrace.1"))
	for _, want := range []string{`.TH "TCPTRACE" "1"`, "tcptrace v9.9.9", `\fB--ladder\fP`, "tcptrace-check(1)"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("tcptrace.1 lacks %q", want)
		}
	}
	if bytes.Contains(page, []byte("cpu-profile")) {
		t.Error("tcptrace.1 shows the hidden --cpu-profile")
	}
}

// TestMakeInstall runs `make install` into a temporary DESTDIR, checks each
// file is where a Linux system looks for it and well-formed, then `make
// uninstall` and checks they are gone.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tcptrace")
	}
	for _, tool := range []string{"make", "install", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	runMake := func(target string) {
		t.Helper()
		c := exec.Command("make", "-C", root, target, "DESTDIR="+dest, "VERSION=v0.0.0-test")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	runMake("install")

	files := map[string]string{
		"bin":  "usr/local/bin/tcptrace",
		"man":  "usr/local/share/man/man1/tcptrace.1",
		"man2": "usr/local/share/man/man1/tcptrace-check.1",
		"bash": "usr/local/share/bash-completion/completions/tcptrace",
		"zsh":  "usr/local/share/zsh/site-functions/_tcptrace",
		"fish": "usr/local/share/fish/vendor_completions.d/tcptrace.fish",
	}
	path := func(k string) string { return filepath.Join(dest, files[k]) }
	for k := range files {
		st, err := os.Stat(path(k))
		if err != nil {
			t.Fatalf("not installed: %v", err)
		}
		wantMode := os.FileMode(0o644)
		if k == "bin" {
			wantMode = 0o755
		}
		if st.Mode().Perm() != wantMode || st.Size() == 0 {
			t.Errorf("%s: mode %v size %d, want %v and not empty", files[k], st.Mode().Perm(), st.Size(), wantMode)
		}
	}

	// The binary runs and says the version it was built with.
	out, err := exec.Command(path("bin"), "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "tcptrace v0.0.0-test" {
		t.Errorf("tcptrace --version: %q, %v", out, err)
	}

	// Man pages: a .TH header naming the page, and they render without a
	// warning.
	for k, title := range map[string]string{"man": `TCPTRACE`, "man2": `TCPTRACE-CHECK`} {
		b, _ := os.ReadFile(path(k))
		if !bytes.HasPrefix(b, []byte(".nh\n.TH \""+title+"\" \"1\"")) || !bytes.Contains(b, []byte("v0.0.0-test")) {
			t.Errorf("%s: no .TH header naming the page and the version:\n%.200s", files[k], b)
		}
		if _, err := exec.LookPath("man"); err != nil {
			continue
		}
		c := exec.Command("man", "--warnings", "-l", path(k))
		c.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		if err := c.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("man -l %s: %v\n%s", files[k], err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "NAME") || !strings.Contains(stdout.String(), "SYNOPSIS") {
			t.Errorf("man -l %s rendered no NAME or SYNOPSIS:\n%.500s", files[k], stdout.String())
		}
	}

	// bash: the script parses and, sourced, completes a flag and the
	// subcommand by asking the installed binary. bash-completion's
	// _get_comp_words_by_ref is stood in for when it is not installed.
	if out, err := exec.Command("bash", "-n", path("bash")).CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s", err, out)
	}
	script := `
compopt() { :; }
declare -F _get_comp_words_by_ref >/dev/null || _get_comp_words_by_ref() {
	cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}
	words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
}
source "$1"
complete_line() {
	COMP_WORDS=($1); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE=$1; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
	__start_tcptrace
	echo "$1 => ${COMPREPLY[*]}"
}
complete_line "tcptrace --lad"
complete_line "tcptrace che"
`
	c := exec.Command("bash", "-c", script, "bash", path("bash"))
	c.Env = append(os.Environ(), "PATH="+filepath.Dir(path("bin"))+":"+os.Getenv("PATH"))
	out, err = c.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tcptrace --lad => --ladder\n") ||
		!strings.Contains(string(out), "tcptrace che => check\n") {
		t.Errorf("bash completion: %v\n%s", err, out)
	}

	// zsh and fish: the command's name, and a clean parse where the shell exists.
	for _, k := range []string{"zsh", "fish"} {
		b, _ := os.ReadFile(path(k))
		if !bytes.Contains(b, []byte("tcptrace")) {
			t.Errorf("%s does not name tcptrace", files[k])
		}
		if _, err := exec.LookPath(k); err == nil {
			if out, err := exec.Command(k, "-n", path(k)).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", k, err, out)
			}
		}
	}
	if b, _ := os.ReadFile(path("zsh")); !bytes.HasPrefix(b, []byte("#compdef tcptrace")) {
		t.Errorf("_tcptrace does not start with #compdef tcptrace:\n%.100s", b)
	}
	if b, _ := os.ReadFile(path("fish")); !bytes.Contains(b, []byte("complete -c tcptrace")) {
		t.Error("tcptrace.fish has no 'complete -c tcptrace'")
	}

	runMake("uninstall")
	for k := range files {
		if _, err := os.Stat(path(k)); !os.IsNotExist(err) {
			t.Errorf("%s still there after make uninstall (%v)", files[k], err)
		}
	}
}
