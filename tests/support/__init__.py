"""What the tests share: the cluster handles (`cluster`), waiting on cluster state
(`kube`), git servers (`gitserver`), repositories of models (`syncs`, `models`), the
operator as a process (`operatorproc`), loopback test servers (`httpserve`,
`promserver`), and readers of the API server's audit log and the operator's metrics
(`audit`, `metrics`). The local cluster itself is the `testcluster` package."""
