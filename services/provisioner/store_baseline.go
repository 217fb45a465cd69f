package provisioner

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Baselines are stored once per distinct configuration. A request applies
// the same configuration (source terms) to a user in every target it
// names, and baselines are most of the state file: at 10,000 users × 20
// orgs, one copy per user and org grew the file to ~370 MB, and the bbolt
// pages a clone touches count in the process's resident memory.
//
// An org's "baseline" bucket maps a user's external id to
// baselineRef + the SHA-256 digest of the configuration's deterministic
// protobuf; the "~baselines" bucket maps the digest to the configuration,
// deflated (baselineDeflated + flate), with the number of users of all
// orgs that refer to it (sub-bucket "refs"): the last reference gone, the
// configuration goes too. A value of an org's bucket that is not a
// reference is plain protobuf, as written by earlier versions (a protobuf
// message never starts with 0xFE or 0xFF: the low three bits of its first
// byte are a wire type, and 6 and 7 are none).
const (
	baselineRef      = 0xFE
	baselineDeflated = 0xFF
)

var (
	baselineDataRefs = []byte("refs")
	deterministic    = proto.MarshalOptions{Deterministic: true}

	deflaters = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(nil, flate.BestSpeed)
		return w
	}}
	inflaters = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}
)

// Baseline is the configuration last applied to a user in org (desired state
// in source terms, email mapped), or nil.
func (s *Store) Baseline(org, userExtID string) (*orgsyncv1.UserConfig, error) {
	var out *orgsyncv1.UserConfig
	err := s.db.View(func(tx *bolt.Tx) error {
		b := orgBucket(tx, org, bucketBaseline)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(userExtID))
		if v == nil {
			return nil
		}
		var err error
		out, err = readBaseline(tx, v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("provisioner: baseline of %s in %s: %w", userExtID, org, err)
	}
	return out, nil
}

// Baselines lists every baseline of org.
func (s *Store) Baselines(org string) ([]*orgsyncv1.UserConfig, error) {
	var out []*orgsyncv1.UserConfig
	err := s.db.View(func(tx *bolt.Tx) error {
		b := orgBucket(tx, org, bucketBaseline)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			u, err := readBaseline(tx, v)
			if err != nil {
				return fmt.Errorf("baseline of %s: %w", k, err)
			}
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("provisioner: baselines of %s: %w", org, err)
	}
	return out, nil
}

// PutBaselines stores the configurations applied to users in org, in one
// transaction: all or, on error, none.
func (s *Store) PutBaselines(org string, users ...*orgsyncv1.UserConfig) error {
	if len(users) == 0 {
		return nil
	}
	type put struct {
		key, raw []byte
		ref      [1 + sha256.Size]byte
	}
	puts := make([]put, len(users))
	for i, u := range users {
		raw, err := deterministic.Marshal(u)
		if err != nil {
			return fmt.Errorf("provisioner: baseline of %s in %s: %w", u.GetExternalId(), org, err)
		}
		puts[i] = put{key: []byte(u.GetExternalId()), raw: raw}
		puts[i].ref[0] = baselineRef
		sum := sha256.Sum256(raw)
		copy(puts[i].ref[1:], sum[:])
	}
	// Batch may run this more than once, each time in a fresh transaction
	// (the failed one rolled back), and a user whose reference is already
	// the one to put is left alone: the counts stay exact.
	return s.db.Batch(func(tx *bolt.Tx) error {
		b, err := createOrgBucket(tx, org, bucketBaseline)
		if err != nil {
			return err
		}
		data, err := tx.CreateBucketIfNotExists(bucketBaselineData)
		if err != nil {
			return err
		}
		refs, err := data.CreateBucketIfNotExists(baselineDataRefs)
		if err != nil {
			return err
		}
		for _, p := range puts {
			old := b.Get(p.key)
			if bytes.Equal(old, p.ref[:]) {
				continue
			}
			if err := addBaselineRef(data, refs, p.ref[1:], p.raw); err != nil {
				return err
			}
			if len(old) == len(p.ref) && old[0] == baselineRef {
				if err := dropBaselineRef(data, refs, bytes.Clone(old[1:])); err != nil {
					return err
				}
			}
			if err := b.Put(p.key, p.ref[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

// addBaselineRef counts one more reference to the configuration digest,
// storing it (raw, deflated) with the first.
func addBaselineRef(data, refs *bolt.Bucket, digest, raw []byte) error {
	n := uint32(0)
	if v := refs.Get(digest); len(v) == 4 {
		n = binary.BigEndian.Uint32(v)
	} else {
		z, err := deflate(raw)
		if err != nil {
			return err
		}
		if err := data.Put(digest, z); err != nil {
			return err
		}
	}
	return refs.Put(digest, binary.BigEndian.AppendUint32(nil, n+1))
}

// dropBaselineRef counts one reference less to digest, deleting the
// configuration with its last one.
func dropBaselineRef(data, refs *bolt.Bucket, digest []byte) error {
	v := refs.Get(digest)
	if len(v) != 4 || binary.BigEndian.Uint32(v) <= 1 {
		if err := refs.Delete(digest); err != nil {
			return err
		}
		return data.Delete(digest)
	}
	return refs.Put(digest, binary.BigEndian.AppendUint32(nil, binary.BigEndian.Uint32(v)-1))
}

// readBaseline decodes a value of an org's baseline bucket: a reference
// to a stored configuration, or plain protobuf.
func readBaseline(tx *bolt.Tx, v []byte) (*orgsyncv1.UserConfig, error) {
	raw := v
	if len(v) > 0 && v[0] == baselineRef {
		data := tx.Bucket(bucketBaselineData)
		if data == nil || len(v) != 1+sha256.Size {
			return nil, fmt.Errorf("malformed reference %x", v)
		}
		z := data.Get(v[1:])
		if z == nil {
			return nil, fmt.Errorf("configuration %x is missing", v[1:])
		}
		var err error
		if raw, err = inflate(z); err != nil {
			return nil, fmt.Errorf("configuration %x: %w", v[1:], err)
		}
	}
	u := &orgsyncv1.UserConfig{}
	if err := proto.Unmarshal(raw, u); err != nil {
		return nil, err
	}
	return u, nil
}

// deflate returns baselineDeflated followed by raw deflated.
func deflate(raw []byte) ([]byte, error) {
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

// inflate reverses deflate.
func inflate(z []byte) ([]byte, error) {
	if len(z) == 0 || z[0] != baselineDeflated {
		return nil, fmt.Errorf("not deflated (first byte %#x)", z[:min(len(z), 1)])
	}
	r := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(z[1:]), nil); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	return buf.Bytes(), nil
}
