module github.com/orgsync/orgsync/pkg

go 1.26.0

replace github.com/orgsync/orgsync/proto => ../proto
