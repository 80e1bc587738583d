package containers

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The labels the kubelet puts on every CRI container.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
)

// criAPI asks a CRI runtime (containerd, CRI-O) over gRPC: ContainerStatus,
// or PodSandboxStatus for a pod's sandbox ("pause") container, which CRI
// does not list as a container.
type criAPI struct {
	ep     Endpoint
	conn   *grpc.ClientConn
	client runtimeapi.RuntimeServiceClient
}

func newCRIAPI(ep Endpoint) (*criAPI, error) {
	// grpc.NewClient does not connect: the first call does.
	conn, err := grpc.NewClient("unix://"+ep.Path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ep, err)
	}
	return &criAPI{ep: ep, conn: conn, client: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

func (c *criAPI) inspect(ctx context.Context, id string) (Info, error) {
	resp, err := c.client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if status.Code(err) == codes.NotFound {
		return c.sandbox(ctx, id)
	}
	if err != nil {
		return Info{}, fmt.Errorf("%s: ContainerStatus: %w", c.ep, err)
	}
	st := resp.GetStatus()
	info := Info{ID: st.GetId(), Runtime: c.ep.Runtime, Name: st.GetMetadata().GetName()}
	labels := st.GetLabels()
	if n := labels[labelContainerName]; n != "" {
		info.Name = n
	}
	info.Pod, info.Namespace, info.PodUID = labels[labelPodName], labels[labelPodNamespace], labels[labelPodUID]
	return info, nil
}

// sandbox names a pod's sandbox container: the pod is all it is.
func (c *criAPI) sandbox(ctx context.Context, id string) (Info, error) {
	resp, err := c.client.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if status.Code(err) == codes.NotFound {
		return Info{}, errNotFound
	}
	if err != nil {
		return Info{}, fmt.Errorf("%s: PodSandboxStatus: %w", c.ep, err)
	}
	md := resp.GetStatus().GetMetadata()
	return Info{ID: id, Runtime: c.ep.Runtime, Pod: md.GetName(), Namespace: md.GetNamespace(), PodUID: md.GetUid()}, nil
}

func (c *criAPI) close() { c.conn.Close() }
