package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeSource reads the cluster from the Kubernetes API, with a reflector
// per kind (see Run). It only gets, lists and watches.
type KubeSource struct {
	Client kubernetes.Interface
	Log    *slog.Logger
	// Resync is the informer's resync period (0: none; skeind's own
	// periodic resync reconciles the kernel anyway).
	Resync time.Duration
	// Services adds Services and EndpointSlices to the snapshots (the
	// Service proxy reads them; without it skeind needs no access).
	Services bool
	// SnapshotGap is the least time between two snapshots (default
	// 100 ms; skeind syncs at most once a second anyway).
	SnapshotGap time.Duration
	// RetryMax is the longest wait between two attempts to reach the
	// API server after a failure (default 1 s).
	RetryMax time.Duration
	// Health, when set, learns of every list or watch that failed, and
	// of every one that reached the API server.
	Health *Health
}

// NewClient builds a client from a kubeconfig file, or from the
// in-cluster service account when kubeconfig is empty.
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		if kubeconfig == "" {
			return nil, fmt.Errorf("no --kubeconfig and not running in a cluster: %w", err)
		}
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.UserAgent = "skeind"
	return kubernetes.NewForConfig(cfg)
}

// Run implements Source: the first snapshot comes once every kind has
// been listed, then one after every relevant change (coalesced).
//
// Each kind has its own reflector rather than a shared informer so that
// it can retry on a short backoff: after an API server outage the
// informers' default (up to 30 s between attempts) would keep a node's
// rules stale for that long after the API server is back.
func (s *KubeSource) Run(ctx context.Context, updates chan<- *State) error {
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	c := s.Client
	nodes := newStore(poke, func(old, cur any) bool {
		o, ok1 := old.(*corev1.Node)
		n, ok2 := cur.(*corev1.Node)
		return !ok1 || !ok2 || relevantChange(o, n)
	})
	s.reflect(ctx, "nodes", &corev1.Node{}, nodes,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Nodes().List(ctx, o)
		}, c.CoreV1().Nodes().Watch)
	all := []*store{nodes}
	services, slices, cidrs := newStore(poke, nil), newStore(poke, nil), newStore(poke, nil)
	if s.Services {
		s.reflect(ctx, "services", &corev1.Service{}, services,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.CoreV1().Services("").List(ctx, o)
			}, c.CoreV1().Services("").Watch)
		s.reflect(ctx, "endpointslices", &discoveryv1.EndpointSlice{}, slices,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.DiscoveryV1().EndpointSlices("").List(ctx, o)
			}, c.DiscoveryV1().EndpointSlices("").Watch)
		all = append(all, services, slices)
		if s.servesServiceCIDRs() {
			s.reflect(ctx, "servicecidrs", &networkingv1.ServiceCIDR{}, cidrs,
				func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					return c.NetworkingV1().ServiceCIDRs().List(ctx, o)
				}, c.NetworkingV1().ServiceCIDRs().Watch)
			all = append(all, cidrs)
		}
	}
	s.Log.Info("waiting for the first complete list from the API server", "services", s.Services)
	for _, st := range all {
		select {
		case <-st.synced:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var prev *State
	for {
		// The snapshot about to be taken holds every change signalled so
		// far: a signal left over would make a needless second snapshot,
		// and hold the next real change back by a gap.
		select {
		case <-changed:
		default:
		}
		st := &State{Nodes: valuesOf[corev1.Node](nodes)}
		if s.Services {
			st.Services = pointersOf[corev1.Service](services)
			st.EndpointSlices = pointersOf[discoveryv1.EndpointSlice](slices)
			st.ServiceCIDRs = pointersOf[networkingv1.ServiceCIDR](cidrs)
		}
		select {
		case updates <- st.Seal(prev):
			prev = st
		case <-ctx.Done():
			return nil
		}
		last := time.Now()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
		// A snapshot lists and sorts every object: under a burst of
		// events (a bulk load) it is taken at most every gap, not once
		// per event. An isolated change is not delayed.
		if wait := s.gap() - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// servesServiceCIDRs tells whether the API server has
// networking.k8s.io/v1 ServiceCIDRs (Kubernetes 1.33 on): before, a
// watch of them would fail forever.
func (s *KubeSource) servesServiceCIDRs() bool {
	list, err := s.Client.Discovery().ServerResourcesForGroupVersion("networking.k8s.io/v1")
	if err != nil {
		s.Log.Info("no ServiceCIDRs: the API server's networking.k8s.io/v1 cannot be listed; only --service-cidr is used", "err", err)
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == "servicecidrs" {
			return true
		}
	}
	s.Log.Info("no ServiceCIDRs on this API server; only --service-cidr is used")
	return false
}

func (s *KubeSource) gap() time.Duration {
	if s.SnapshotGap > 0 {
		return s.SnapshotGap
	}
	return 100 * time.Millisecond
}

// reflect keeps st in step with one kind of object until ctx ends.
func (s *KubeSource) reflect(ctx context.Context, name string, obj runtime.Object, st *store,
	list cache.ListWithContextFunc, watchFn cache.WatchFuncWithContext) {
	retry := s.RetryMax
	if retry <= 0 {
		retry = time.Second
	}
	// Every call reports to Health: a reflector has no public hook for
	// its errors.
	listed := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		obj, err := list(ctx, o)
		s.report(name, err)
		return obj, err
	}
	watched := func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		w, err := watchFn(ctx, o)
		s.report(name, err)
		return w, err
	}
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{ListWithContextFunc: listed, WatchFuncWithContext: watched}, s.Client)
	r := cache.NewReflectorWithOptions(lw, obj, st, cache.ReflectorOptions{
		Name:         "skeind " + name,
		ResyncPeriod: s.Resync,
		Backoff:      &wait.Backoff{Duration: retry / 4, Factor: 2, Jitter: 0.2, Steps: 3, Cap: retry},
	})
	go r.RunWithContext(ctx)
}

// ReasonAPI is the reason of a failed list or watch, as a metric label.
const ReasonAPI = "api"

func (s *KubeSource) report(kind string, err error) {
	if err == nil {
		s.Health.Good()
		return
	}
	if !errors.Is(err, context.Canceled) {
		s.Health.Bad(ReasonAPI, fmt.Errorf("%s: %w", kind, err))
	}
}

// trim drops what skeind never reads and what costs memory at scale: the
// server-side apply bookkeeping.
func trim(obj any) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
}

// relevantChange tells whether an update touches what skeind reads: pod
// CIDRs, addresses, annotations, labels (the zone), taints and deletion
// (whether load balancers may send to the node). Status heartbeats do not.
func relevantChange(old, cur *corev1.Node) bool {
	return !reflect.DeepEqual(old.Spec.PodCIDRs, cur.Spec.PodCIDRs) ||
		old.Spec.PodCIDR != cur.Spec.PodCIDR ||
		!reflect.DeepEqual(old.Status.Addresses, cur.Status.Addresses) ||
		!reflect.DeepEqual(old.Annotations, cur.Annotations) ||
		!reflect.DeepEqual(old.Labels, cur.Labels) ||
		!reflect.DeepEqual(old.Spec.Taints, cur.Spec.Taints) ||
		!old.DeletionTimestamp.Equal(cur.DeletionTimestamp)
}
