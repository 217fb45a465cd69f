package provisioner

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Baselines are stored deflated: one per user and target org, they are
// most of the state file (a user's configuration names its skills, queues
// and roles by external ids that repeat "source|SKILL|…"), and the bbolt
// pages a clone touches count in the process's resident memory — at
// 10,000 users × 20 orgs the file grew to ~370 MB. A value starting with
// baselineDeflated is deflated protobuf; any other value is plain
// protobuf, as written before (a protobuf message never starts with
// 0xFF: the low three bits of a first byte are a wire type, and 7 is none).
const baselineDeflated = 0xFF

var (
	deflaters = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(nil, flate.BestSpeed)
		return w
	}}
	inflaters = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}
)

// encodeBaseline marshals u and deflates it.
func encodeBaseline(u *orgsyncv1.UserConfig) ([]byte, error) {
	raw, err := proto.Marshal(u)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(len(raw)/2 + 16)
	out.WriteByte(baselineDeflated)
	w := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(w)
	w.Reset(&out)
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// decodeBaseline reads a value written by encodeBaseline (or a plain
// protobuf one written before baselines were deflated).
func decodeBaseline(v []byte) (*orgsyncv1.UserConfig, error) {
	raw := v
	if len(v) > 0 && v[0] == baselineDeflated {
		r := inflaters.Get().(io.ReadCloser)
		defer inflaters.Put(r)
		if err := r.(flate.Resetter).Reset(bytes.NewReader(v[1:]), nil); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r); err != nil {
			return nil, fmt.Errorf("inflate: %w", err)
		}
		raw = buf.Bytes()
	}
	u := &orgsyncv1.UserConfig{}
	if err := proto.Unmarshal(raw, u); err != nil {
		return nil, err
	}
	return u, nil
}
