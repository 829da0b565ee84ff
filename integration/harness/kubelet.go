package harness

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The cluster has no kubelet: with an API server the harness plays it.
// RunPod and SetPodReady do what a kubelet does for a pod's network: make
// the sandbox through the node's CNI plugin, then report the pod's
// addresses and readiness in its status, from which kube-controller-
// manager builds the EndpointSlices.

// RunPod makes a pod on n through the real plugin and registers it in the
// API server as a Pod bound to n, Running and Ready, with its addresses.
func (c *Cluster) RunPod(ctx context.Context, n *ClusterNode, namespace, name string, labels map[string]string) (*Pod, error) {
	if c.api == nil {
		return nil, fmt.Errorf("RunPod needs an API server")
	}
	p, err := n.AddPod(ctx, c.opts.Prefix+"-"+name, name)
	if err != nil {
		return nil, fmt.Errorf("ADD pod %s on %s: %w", name, n.Name, err)
	}
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   n.Name,
			Containers: []corev1.Container{{Name: "echo", Image: "skein.test/echo", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}
	made, err := c.api.CoreV1().Pods(namespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create Pod %s: %w", name, err)
	}
	made.Status.Phase = corev1.PodRunning
	for _, ip := range p.IPs {
		made.Status.PodIPs = append(made.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	made.Status.PodIP = p.IPs[0]
	made.Status.HostIP = n.IP.String()
	if _, err := c.api.CoreV1().Pods(namespace).UpdateStatus(ctx, made, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("set the status of Pod %s: %w", name, err)
	}
	return p, c.SetPodReady(ctx, namespace, name, true)
}

// SetPodReady sets the pod's Ready condition, as a kubelet does when its
// readiness probe passes or fails.
func (c *Cluster) SetPodReady(ctx context.Context, namespace, name string, ready bool) error {
	pod, err := c.api.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.NewTime(time.Now())
	pod.Status.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: t, Status: status, LastTransitionTime: now})
	}
	if _, err := c.api.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set Pod %s ready=%v: %w", name, ready, err)
	}
	return nil
}
