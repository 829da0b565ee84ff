package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// TestDeployManifest checks conf/deploy against skeind itself: the
// ConfigMap's keys are skeind flags with valid values, and the DaemonSet
// gives skeind what it needs and no more. (The integration tests apply
// the manifests to a real API server and run skeind as their
// ServiceAccount.)
func TestDeployManifest(t *testing.T) {
	data, err := os.ReadFile("../../../conf/deploy/skein.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	var ds appsv1.DaemonSet
	var role rbacv1.ClusterRole
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := docs.Read()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		into := map[string]any{"ConfigMap": &cm, "DaemonSet": &ds, "ClusterRole": &role}[meta.Kind]
		if into == nil {
			continue
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}

	env := []string{"NODE_NAME=n1"}
	for k, v := range cm.Data {
		if strings.HasPrefix(k, envPrefix) {
			env = append(env, k+"="+v)
		}
	}
	f, unknown, err := parseFlags(nil, env)
	if err != nil {
		t.Fatalf("the ConfigMap's settings: %v", err)
	}
	if len(unknown) > 0 {
		t.Errorf("ConfigMap keys that name no flag: %v", unknown)
	}
	_, healthPort, err := net.SplitHostPort(f.healthAddr)
	if err != nil {
		t.Fatal(err)
	}

	for _, r := range role.Rules {
		if !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("ClusterRole grants %v on %v; skeind only reads", r.Verbs, r.Resources)
		}
	}

	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.PriorityClassName != "system-node-critical" {
		t.Errorf("hostNetwork %v, priorityClassName %q", spec.HostNetwork, spec.PriorityClassName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == "" && t.Operator == corev1.TolerationOpExists }) {
		t.Error("the DaemonSet does not tolerate every taint")
	}
	if u := ds.Spec.UpdateStrategy.RollingUpdate; u == nil || u.MaxSurge == nil || u.MaxSurge.IntValue() != 0 {
		t.Error("a rolling update could run two skeinds on a node (maxSurge must be 0)")
	}
	if len(spec.InitContainers) != 1 || !slices.Contains(spec.InitContainers[0].Command, "install-cni") {
		t.Fatalf("no install-cni init container: %+v", spec.InitContainers)
	}
	dockerfile, err := os.ReadFile("../../../conf/deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if dir := strings.TrimSuffix(c.Command[0], "skeind"); !strings.Contains(string(dockerfile), "COPY --from=build /out/ "+dir) {
			t.Errorf("%s runs %s, which the image does not hold", c.Name, c.Command[0])
		}
		if sc := c.SecurityContext; sc == nil || (sc.Privileged != nil && *sc.Privileged) || sc.Capabilities == nil ||
			!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: want every capability dropped but those it needs, not privileged: %+v", c.Name, sc)
		}
	}
	skeind := spec.Containers[0]
	if got := skeind.SecurityContext.Capabilities.Add; !slices.Equal(got, []corev1.Capability{"NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"}) {
		t.Errorf("skeind's capabilities: %v, want NET_ADMIN, NET_RAW and NET_BIND_SERVICE", got)
	}
	if spec.DNSPolicy != corev1.DNSDefault {
		t.Errorf("dnsPolicy %q: skeind's upstream resolvers must be the node's (Default), never the cluster DNS it serves", spec.DNSPolicy)
	}
	if !slices.ContainsFunc(skeind.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("NODE_NAME does not come from the downward API")
	}
	for probe, path := range map[*corev1.Probe]string{skeind.ReadinessProbe: "/readyz", skeind.LivenessProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != healthPort {
			t.Errorf("probe for %s does not match skeind's --health-addr %s: %+v", path, f.healthAddr, probe)
		}
	}
	mounts := map[string]bool{}
	for _, m := range skeind.VolumeMounts {
		mounts[m.MountPath] = m.ReadOnly
	}
	for _, p := range []string{"/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni", "/run/xtables.lock", "/lib/modules"} {
		ro, ok := mounts[p]
		if !ok {
			t.Errorf("skeind does not mount %s", p)
		}
		if ro != (p == "/lib/modules") {
			t.Errorf("%s mounted read-only=%v", p, ro)
		}
	}
	if f.conflist != "/etc/cni/net.d/10-skein.conflist" {
		t.Errorf("the conflist goes to %s, outside the mounted /etc/cni/net.d", f.conflist)
	}
}
