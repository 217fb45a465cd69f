module github.com/orgsync/orgsync/proto

go 1.26.0
