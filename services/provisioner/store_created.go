package provisioner

import bolt "go.etcd.io/bbolt"

// bucketCreated records the shared resources (skills, languages, teams)
// orgsync created in an org — external id → target id — so orphaned ones can
// be reported as orgsync's own (drift.go). Lost with the file, the record
// only makes the orphan report miss older creations.
var bucketCreated = []byte("created")

// MarkCreated records that orgsync created the resource externalID in org.
func (s *Store) MarkCreated(org, externalID, targetID string) error {
	return s.update(org, bucketCreated, func(b *bolt.Bucket) error {
		return b.Put([]byte(externalID), []byte(targetID))
	})
}

// Created reports whether orgsync created the resource externalID in org,
// and its target id.
func (s *Store) Created(org, externalID string) (string, bool, error) {
	var id string
	err := s.view(org, bucketCreated, func(b *bolt.Bucket) error {
		if b != nil {
			id = string(b.Get([]byte(externalID)))
		}
		return nil
	})
	return id, id != "", err
}
