package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// FreshAPI runs up, a shell command that starts an API server afresh
// (an empty etcd) and prints its admin kubeconfig's path last, for a
// benchmark: it returns that path and a client without client-side rate
// limits (bulk means bulk), with namespace made there.
func FreshAPI(ctx context.Context, up, namespace string) (string, kubernetes.Interface, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", up)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", up, err)
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		return "", nil, fmt.Errorf("%s printed no kubeconfig", up)
	}
	kc := lines[len(lines)-1]
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return "", nil, err
	}
	cfg.QPS, cfg.Burst = -1, 0
	api, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", nil, err
	}
	_, err = api.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	return kc, api, err
}

// Parallel runs do(0..n-1) on 16 workers and returns the first error.
func Parallel(n int, do func(int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := do(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
