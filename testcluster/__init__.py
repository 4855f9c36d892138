"""A real Kubernetes control plane for tests, built from Go modules and run on loopback.

`build` compiles etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kubectl, kwok and helm into one cached multi-call binary; `launcher` starts them
as a cluster whose nodes are kwok's fake nodes. `python -m testcluster up`
does both from the command line.
"""
