package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifestScheme knows the kinds daemonset.yaml may hold; any other kind is
// an error, so every object in the file is decoded into its real type.
func manifestScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := appsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// yamlDocuments splits a multi-document YAML stream, leaving out documents
// that hold only comments.
func yamlDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for range 1000 { // a manifest of more than 1000 objects is a mistake
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if string(bytes.TrimSpace(j)) == "null" {
			continue
		}
		docs = append(docs, doc)
	}
	return nil, errors.New("more than 1000 YAML documents")
}

// decodeManifest decodes every object of a manifest into the Kubernetes API
// types, the way the API server's strict field validation does (kubectl
// apply --validate=strict): an unknown field, a duplicated field or an
// unknown kind is an error. strict=false is the lenient decoding kubectl
// used to do, for the tests that show the difference.
func decodeManifest(data []byte, strict bool) ([]runtime.Object, error) {
	s := manifestScheme()
	ser := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s,
		kjson.SerializerOptions{Yaml: true, Strict: strict})
	docs, err := yamlDocuments(data)
	if err != nil {
		return nil, err
	}
	var objs []runtime.Object
	for i, doc := range docs {
		obj, _, err := ser.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("object %d: %w", i+1, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// fleet is what daemonset.yaml holds.
type fleet struct {
	Namespace      *corev1.Namespace
	ServiceAccount *corev1.ServiceAccount
	DaemonSet      *appsv1.DaemonSet
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// loadFleet decodes daemonset.yaml strictly and expects exactly one
// Namespace, ServiceAccount and DaemonSet.
func loadFleet(tb testing.TB) fleet {
	tb.Helper()
	objs, err := decodeManifest(readFile(tb, "daemonset.yaml"), true)
	if err != nil {
		tb.Fatalf("daemonset.yaml: %v", err)
	}
	var f fleet
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Namespace:
			if f.Namespace != nil {
				tb.Fatal("daemonset.yaml: two Namespaces")
			}
			f.Namespace = o
		case *corev1.ServiceAccount:
			if f.ServiceAccount != nil {
				tb.Fatal("daemonset.yaml: two ServiceAccounts")
			}
			f.ServiceAccount = o
		case *appsv1.DaemonSet:
			if f.DaemonSet != nil {
				tb.Fatal("daemonset.yaml: two DaemonSets")
			}
			f.DaemonSet = o
		default:
			tb.Fatalf("daemonset.yaml: unexpected object %T", o)
		}
	}
	if f.Namespace == nil || f.ServiceAccount == nil || f.DaemonSet == nil {
		tb.Fatalf("daemonset.yaml: want a Namespace, a ServiceAccount and a DaemonSet, got %d objects", len(objs))
	}
	return f
}

// tracerContainer is the DaemonSet's one container.
func tracerContainer(tb testing.TB, ds *appsv1.DaemonSet) *corev1.Container {
	tb.Helper()
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "tcptrace" {
		tb.Fatalf("want one container named tcptrace, got %d", len(cs))
	}
	return &cs[0]
}
