package deploy

import (
	"strconv"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// podMonitor is the part of the Prometheus Operator's PodMonitor
// (monitoring.coreos.com/v1) that podmonitor.yaml uses, with the operator's
// JSON names. A stand-in, and it says so: the operator's Go types
// (github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring)
// are not among this module's dependencies and their CRD cannot be served
// offline. Decoded strictly, it still refuses a field this struct does not
// know, so a new field in podmonitor.yaml needs adding here, by name, after
// checking the operator's API reference.
type podMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			Relabelings   []struct {
				SourceLabels []string `json:"sourceLabels"`
				TargetLabel  string   `json:"targetLabel"`
				Action       string   `json:"action"`
			} `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

func TestPodMonitorScrapesTheDaemonSet(t *testing.T) {
	var pm podMonitor
	if err := yaml.UnmarshalStrict(readFile(t, "podmonitor.yaml"), &pm); err != nil {
		t.Fatalf("podmonitor.yaml: %v", err)
	}
	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Kind != "PodMonitor" {
		t.Errorf("%s %s, want monitoring.coreos.com/v1 PodMonitor", pm.APIVersion, pm.Kind)
	}
	f := loadFleet(t)
	ds := f.DaemonSet
	c := tracerContainer(t, ds)
	if pm.Metadata.Namespace != ds.Namespace {
		t.Errorf("PodMonitor in namespace %q, the DaemonSet in %q", pm.Metadata.Namespace, ds.Namespace)
	}
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("selector %v does not select the DaemonSet's pods %v (%v)", pm.Spec.Selector, ds.Spec.Template.Labels, err)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("want one podMetricsEndpoint, got %d", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	port := metricsFlagPort(t, c.Args)
	var portName string
	for _, p := range c.Ports {
		if int(p.ContainerPort) == port {
			portName = p.Name
		}
	}
	if portName == "" || ep.Port != portName {
		t.Errorf("endpoint port %q, want the name of container port %d (%q)", ep.Port, port, portName)
	}
	if want := ds.Spec.Template.Annotations["prometheus.io/path"]; ep.Path != want {
		t.Errorf("endpoint path %q, the annotation says %q", ep.Path, want)
	}
	if ds.Spec.Template.Annotations["prometheus.io/port"] != strconv.Itoa(port) {
		t.Error("the prometheus.io/port annotation and the PodMonitor disagree")
	}
}

// The stand-in struct is decoded strictly too: a misspelt field is refused.
func TestPodMonitorStrictDecoding(t *testing.T) {
	var pm podMonitor
	err := yaml.UnmarshalStrict([]byte("apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nspec:\n  podMetricEndpoints: []\n"), &pm)
	if err == nil {
		t.Fatal("a misspelt podMetricsEndpoints was accepted")
	}
}
