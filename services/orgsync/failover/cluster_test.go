package failover_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// natsNode is one nats-server process of a test cluster.
type natsNode struct {
	name      string
	clientURL string
	proc      *proc // proc.httpAddr is the monitoring port
}

// natsCluster is a JetStream cluster of nats-server processes on loopback.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

// startNATSCluster starts n nats-server processes (the binary built from
// github.com/nats-io/nats-server/v2) forming one JetStream cluster, each
// with its own store under dir, and waits until the cluster has a meta
// leader every node agrees on.
func startNATSCluster(t *testing.T, dir string, n int) *natsCluster {
	t.Helper()
	type ports struct{ client, cluster, monitor string }
	addrs := make([]ports, n)
	var routes []string
	for i := range addrs {
		addrs[i] = ports{freeAddr(t), freeAddr(t), freeAddr(t)}
		routes = append(routes, "nats-route://"+addrs[i].cluster)
	}
	c := &natsCluster{t: t}
	for i, a := range addrs {
		name := fmt.Sprintf("nats-%d", i+1)
		// The settings of deploy/nats/*.conf, on loopback ports.
		conf := fmt.Sprintf(`server_name: %s
listen: %s
http: %s
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: orgsync-failover
  listen: %s
  routes: [
    %s
  ]
}
max_payload: 8MB
`, name, a.client, a.monitor, filepath.Join(dir, name), a.cluster, strings.Join(routes, "\n    "))
		confPath := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startProc(t, name, bin("nats-server"), a.monitor, dir, "-c", confPath)
		c.nodes = append(c.nodes, &natsNode{name: name, clientURL: "nats://" + a.client, proc: p})
	}
	c.waitFormed(time.Minute, nil)
	return c
}

// urls is the comma-separated client URL list of every node.
func (c *natsCluster) urls() string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.clientURL)
	}
	return strings.Join(out, ",")
}

// node returns the node named name (a server_name), or nil.
func (c *natsCluster) node(name string) *natsNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// jsz is the part of a node's /jsz that tells its view of the meta group.
type jsz struct {
	Meta struct {
		Leader string `json:"leader"`
		Size   int    `json:"cluster_size"`
		// Replicas are the other peers of the meta group (as the leader
		// sees them when asked on the leader).
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
		} `json:"replicas"`
	} `json:"meta_cluster"`
}

func (n *natsNode) jsz() (jsz, error) {
	var out jsz
	code, body, err := httpGet(n.proc.httpAddr, "/jsz")
	if err != nil {
		return out, err
	}
	if code != http.StatusOK {
		return out, fmt.Errorf("/jsz: %d %s", code, body)
	}
	return out, json.Unmarshal([]byte(body), &out)
}

// healthy reports whether the node's /healthz answers 200: JetStream is
// current with the meta leader and every stream and consumer replica the
// node holds has caught up.
func (n *natsNode) healthy() bool {
	code, _, err := httpGet(n.proc.httpAddr, "/healthz")
	return err == nil && code == http.StatusOK
}

// waitFormed polls until every node but the ones in down is healthy and
// they all name the same meta leader (not a down node) of a meta group of
// len(c.nodes) peers. It returns that leader.
func (c *natsCluster) waitFormed(timeout time.Duration, down map[string]bool) string {
	c.t.Helper()
	var leader string
	waitForState(c.t, timeout, "the NATS cluster to be formed with a JetStream meta leader", func() (bool, string) {
		leader = ""
		for _, n := range c.nodes {
			if down[n.name] {
				continue
			}
			if !n.healthy() {
				return false, n.name + " /healthz not 200"
			}
			z, err := n.jsz()
			if err != nil || z.Meta.Leader == "" || z.Meta.Size != len(c.nodes) || (leader != "" && z.Meta.Leader != leader) || down[z.Meta.Leader] {
				return false, fmt.Sprintf("%s: meta leader %q, cluster size %d, err %v", n.name, z.Meta.Leader, z.Meta.Size, err)
			}
			leader = z.Meta.Leader
		}
		// The leader must see every other live peer current: until then it
		// places no R3 stream ("no suitable peers for placement").
		z, err := c.node(leader).jsz()
		if err != nil {
			return false, fmt.Sprintf("meta leader %s: %v", leader, err)
		}
		current := 0
		for _, r := range z.Meta.Replicas {
			if r.Current && !r.Offline {
				current++
			}
		}
		if want := len(c.nodes) - 1 - len(down); current < want {
			return false, fmt.Sprintf("meta leader %s sees %d of %d other peers current: %+v", leader, current, want, z.Meta.Replicas)
		}
		return true, ""
	})
	return leader
}

// streamLeader is the server name of the leader of stream, "" while there
// is none (or it cannot be asked).
func streamLeader(js jetstream.JetStream, stream string) (string, []*jetstream.PeerInfo) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", nil
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return "", nil
	}
	return info.Cluster.Leader, info.Cluster.Replicas
}

// metaLeader is the meta leader as the first answering node but skip sees it.
func (c *natsCluster) metaLeader(skip string) string {
	for _, n := range c.nodes {
		if n.name == skip {
			continue
		}
		if z, err := n.jsz(); err == nil && z.Meta.Leader != "" {
			return z.Meta.Leader
		}
	}
	return ""
}

// created is the number of resources of kind ("user", "skill"...) gcsim
// created in the given orgs.
func (s *system) created(kind string, keys []string) int {
	n := 0
	for _, k := range keys {
		n += s.sim.Stats(s.orgIDs[k]).Creates[kind]
	}
	return n
}

// assertReplicas checks that every stream and KV bucket (KV_* streams) on
// the cluster has want replicas: a service that (re)creates one with
// fewer would make a single node failure lose it.
func (s *system) assertReplicas(want int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lister := s.js.ListStreams(ctx)
	n := 0
	for info := range lister.Info() {
		n++
		if info.Config.Replicas != want {
			s.t.Errorf("stream %s has %d replicas, want %d", info.Config.Name, info.Config.Replicas, want)
		}
	}
	if err := lister.Err(); err != nil {
		s.t.Fatalf("list streams: %v", err)
	}
	if n == 0 {
		s.t.Fatal("no streams on the cluster")
	}
}

// assertDrained checks that no durable consumer of the work streams has a
// message left to deliver or waiting for its ack (no stuck consumer).
func (s *system) assertDrained(timeout time.Duration, streams ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	waitForState(s.t, timeout, "every durable consumer drained", func() (bool, string) {
		for _, stream := range streams {
			st, err := s.js.Stream(ctx, stream)
			if err != nil {
				return false, fmt.Sprintf("stream %s: %v", stream, err)
			}
			lister := st.ListConsumers(ctx)
			for ci := range lister.Info() {
				if ci.Config.Durable == "" {
					continue
				}
				if ci.NumPending != 0 || ci.NumAckPending != 0 {
					return false, fmt.Sprintf("%s/%s: %d pending, %d unacknowledged", stream, ci.Name, ci.NumPending, ci.NumAckPending)
				}
			}
			if err := lister.Err(); err != nil {
				return false, fmt.Sprintf("consumers of %s: %v", stream, err)
			}
		}
		return true, ""
	})
}
