// A wrapper module to build etcd: go install fails on etcd's monorepo replace lines, but a
// module that only requires the server module resolves its published dependencies.
module wabaplane.io/hack/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.16
