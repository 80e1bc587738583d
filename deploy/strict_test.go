package deploy

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// Strict decoding is what makes the other tests worth anything: a field
// with a typo decodes leniently into nothing, and the DaemonSet would run
// without it. Each case breaks the real daemonset.yaml in one way, checks
// that lenient decoding still accepts it (so the mistake is a silent one),
// and that strict decoding refuses it, naming the field.
func TestStrictDecodingRefusesBrokenManifests(t *testing.T) {
	good := string(readFile(t, "daemonset.yaml"))
	cases := []struct {
		name      string
		old, new  string
		wantError string
	}{
		{
			// The Go field is HostPID, the JSON name hostPID: hostPid
			// would leave the pod in its own PID namespace.
			name:      "unknown field",
			old:       "      hostPID: true\n",
			new:       "      hostPid: true\n",
			wantError: `unknown field "spec.template.spec.hostPid"`,
		},
		{
			// readOnly one level too far out: the mount would be writable.
			name:      "field at the wrong level",
			old:       "            - name: btf\n              mountPath: /sys/kernel/btf\n              readOnly: true\n",
			new:       "            - name: btf\n              mountPath: /sys/kernel/btf\n              readonly: true\n",
			wantError: `unknown field "spec.template.spec.containers[0].volumeMounts[0].readonly"`,
		},
		{
			// YAML keeps the last of two equal keys: privileged: true
			// would win without a word.
			name:      "duplicate field",
			old:       "            privileged: false\n",
			new:       "            privileged: false\n            privileged: true\n",
			wantError: `key "privileged" already set in map`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(good, c.old) != 1 {
				t.Fatalf("daemonset.yaml no longer holds %q exactly once: update this test", c.old)
			}
			broken := []byte(strings.Replace(good, c.old, c.new, 1))
			if _, err := decodeManifest(broken, false); err != nil {
				t.Fatalf("lenient decoding refused it too, so the case proves nothing: %v", err)
			}
			_, err := decodeManifest(broken, true)
			if err == nil {
				t.Fatal("strict decoding accepted the broken manifest")
			}
			if !runtime.IsStrictDecodingError(unwrapAll(err)) {
				t.Errorf("want a strict decoding error, got %T: %v", err, err)
			}
			if !strings.Contains(err.Error(), c.wantError) {
				t.Errorf("error %q does not say %q", err, c.wantError)
			}
		})
	}
}

// A kind the scheme does not know is refused rather than skipped.
func TestDecodingRefusesUnknownKinds(t *testing.T) {
	_, err := decodeManifest([]byte("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: x\n"), true)
	if err == nil || !runtime.IsNotRegisteredError(unwrapAll(err)) {
		t.Fatalf("want a not-registered error, got %v", err)
	}
}

// unwrapAll returns the innermost wrapped error (decodeManifest wraps the
// decoder's error with the object's index).
func unwrapAll(err error) error {
	for range 10 {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
	return err
}
