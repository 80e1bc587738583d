package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// errNotFound: the runtime does not know this container.
var errNotFound = errors.New("no such container")

// dockerAPI asks Docker, or Podman's Docker-compatible service, over its
// unix socket: GET /containers/ID/json.
type dockerAPI struct {
	ep     Endpoint
	client *http.Client
}

func newDockerAPI(ep Endpoint) *dockerAPI {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", ep.Path)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &dockerAPI{ep: ep, client: &http.Client{Transport: tr}}
}

// inspectReply is the part of the inspect reply used here.
type inspectReply struct {
	ID     string `json:"Id"`
	Name   string `json:"Name"`
	Config struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

func (d *dockerAPI) inspect(ctx context.Context, id string) (Info, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://runtime/containers/"+url.PathEscape(id)+"/json", nil)
	if err != nil {
		return Info{}, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return Info{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return Info{}, errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return Info{}, fmt.Errorf("%s: GET /containers/%s/json: %s", d.ep, id, resp.Status)
	}
	var r inspectReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&r); err != nil {
		return Info{}, fmt.Errorf("%s: reading the inspect reply: %w", d.ep, err)
	}
	info := Info{ID: r.ID, Runtime: d.ep.Runtime, Name: trimSlash(r.Name)}
	// cri-dockerd's containers carry the kubelet's labels.
	info.Pod = r.Config.Labels[labelPodName]
	info.Namespace = r.Config.Labels[labelPodNamespace]
	if n := r.Config.Labels[labelContainerName]; n != "" {
		info.Name = n
	}
	return info, nil
}

// trimSlash: Docker names start with "/".
func trimSlash(s string) string {
	if len(s) > 0 && s[0] == '/' {
		return s[1:]
	}
	return s
}

func (d *dockerAPI) close() { d.client.CloseIdleConnections() }
