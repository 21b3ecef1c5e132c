//go:build tools

// Package kube pins the Kubernetes commands the local control plane is built from, so that
// `go mod tidy` keeps their dependencies in go.sum.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
