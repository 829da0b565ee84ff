package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeSource reads the cluster from the Kubernetes API with a shared
// informer. It only gets, lists and watches.
type KubeSource struct {
	Client kubernetes.Interface
	Log    *slog.Logger
	// Resync is the informer's resync period (0: none; skeind's own
	// periodic resync reconciles the kernel anyway).
	Resync time.Duration
	// Services adds Services and EndpointSlices to the snapshots (the
	// Service proxy reads them; without it skeind needs no access).
	Services bool
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

// Run implements Source: the first snapshot comes once the informer's
// cache has synced, then one after every relevant change (coalesced).
func (s *KubeSource) Run(ctx context.Context, updates chan<- *State) error {
	factory := informers.NewSharedInformerFactory(s.Client, s.Resync)
	nodes := factory.Core().V1().Nodes()
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		DeleteFunc: func(any) { poke() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || relevantChange(o, n) {
				poke()
			}
		},
	}); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	synced := []cache.InformerSynced{nodes.Informer().HasSynced}
	services := factory.Core().V1().Services()
	slices := factory.Discovery().V1().EndpointSlices()
	if s.Services {
		handler := cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { poke() }, DeleteFunc: func(any) { poke() },
			UpdateFunc: func(old, cur any) { poke() },
		}
		for _, inf := range []cache.SharedIndexInformer{services.Informer(), slices.Informer()} {
			if _, err := inf.AddEventHandler(handler); err != nil {
				return fmt.Errorf("watch services: %w", err)
			}
			synced = append(synced, inf.HasSynced)
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	s.Log.Info("waiting for the first complete list from the API server", "services", s.Services)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	for {
		st, err := s.snapshot(nodes.Lister(), services.Lister(), slices.Lister())
		if err != nil {
			return err
		}
		select {
		case updates <- st:
		case <-ctx.Done():
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

func (s *KubeSource) snapshot(nodes corelisters.NodeLister, services corelisters.ServiceLister,
	slices discoverylisters.EndpointSliceLister) (*State, error) {
	list, err := nodes.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list nodes from the cache: %w", err)
	}
	st := &State{Nodes: make([]corev1.Node, 0, len(list))}
	for _, n := range list {
		st.Nodes = append(st.Nodes, *n)
	}
	if !s.Services {
		return st, nil
	}
	svcs, err := services.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list services from the cache: %w", err)
	}
	st.Services = svcs
	eps, err := slices.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list endpointslices from the cache: %w", err)
	}
	st.EndpointSlices = eps
	return st, nil
}

// relevantChange tells whether an update touches what skeind reads: pod
// CIDRs, addresses and annotations. Status heartbeats do not.
func relevantChange(old, cur *corev1.Node) bool {
	return !reflect.DeepEqual(old.Spec.PodCIDRs, cur.Spec.PodCIDRs) ||
		old.Spec.PodCIDR != cur.Spec.PodCIDR ||
		!reflect.DeepEqual(old.Status.Addresses, cur.Status.Addresses) ||
		!reflect.DeepEqual(old.Annotations, cur.Annotations)
}
