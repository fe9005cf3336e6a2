#!/usr/bin/env python3
"""Checks the manifests `helm template` rendered for one values file (called
by scripts/helm-check).

    helm-check-rendered.py RENDERED.yaml OUT_PREFIX CLUSTER_KNOWN CHART_DIR

Writes OUT_PREFIX.toml (the configuration in the ConfigMap) and
OUT_PREFIX.check.toml (the file to give `xmpp-edge check-config`: the same,
without [cluster] when CLUSTER_KNOWN is 0, else with cluster.secret_file
pointing at a local stand-in for the mounted Secret), then checks that the pod spec
agrees with the configuration. Exits non-zero, naming each problem, if not.
"""

import json
import os
import re
import sys
import tomllib

import yaml

rendered, prefix, cluster_known, chart = sys.argv[1:]
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
for d in docs:
    check(
        d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"),
        f"a manifest without apiVersion, kind or name: {str(d)[:80]}",
    )


def find(kind, pred=lambda d: True):
    return [d for d in docs if d["kind"] == kind and pred(d)]


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


# --- the configuration ---------------------------------------------------------
(cm,) = find("ConfigMap", lambda d: "xmpp-edge.toml" in d.get("data", {}))
text = cm["data"]["xmpp-edge.toml"]
with open(prefix + ".toml", "w") as f:
    f.write(text)
config = tomllib.loads(text)  # a TOML syntax error fails here

check_text = text
if "cluster" in config and cluster_known == "0":
    # Leave out the [cluster] table (the chart writes it as one section).
    check_text = re.sub(r"(?ms)^\[cluster\]\n.*?(?=^\[|\Z)", "", text)
    check("cluster" not in tomllib.loads(check_text), "could not take [cluster] out")
elif "cluster" in config:
    # The Secret is mounted in the pod, not here: point secret_file at a
    # stand-in in case check-config reads it.
    secret = prefix + ".cluster-secret"
    with open(secret, "w") as f:
        f.write("x" * 48)
    line = f'secret_file = {json.dumps(config["cluster"]["secret_file"])}'
    check(line in text, "cluster.secret_file not found in the TOML")
    check_text = text.replace(line, f"secret_file = {json.dumps(secret)}")
with open(prefix + ".check.toml", "w") as f:
    f.write(check_text)

# --- the pod spec agrees with it -------------------------------------------------
(dep,) = find("Deployment")
pod = dep["spec"]["template"]
spec = pod["spec"]
(ctr,) = spec["containers"]
ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
mounts = {m["name"]: m["mountPath"] for m in ctr.get("volumeMounts", [])}
volumes = {v["name"]: v for v in spec.get("volumes", [])}

check(re.fullmatch(r"[0-9a-f]{64}", pod["metadata"]["annotations"].get("checksum/config", "")),
      "no checksum/config annotation on the pod template")
check(ctr["args"][-1].startswith(mounts["config"] + "/"), "--config is not in the ConfigMap mount")
check(ports["http"] == port_of(config["server"]["listen"]), "http port != server.listen")
check(ports["metrics"] == port_of(config["metrics"]["listen"]), "metrics port != metrics.listen")
check(config["metrics"]["enabled"] is True, "metrics.enabled is not true (the probes need it)")
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = ctr[probe]["httpGet"]
    check(get["path"] == path and get["port"] in ("metrics", ports["metrics"]),
          f"{probe} is not {path} on the metrics port")

certs = config.get("tls", {}).get("certificates", [])
if certs:
    check(ports.get("https") == port_of(config["tls"]["listen"]), "https port != tls.listen")
    mounted = set(mounts.values())
    for c in certs:
        for key in ("cert_file", "key_file"):
            check(os.path.dirname(c[key]) in mounted, f"{c[key]} is not in a mounted Secret")
else:
    check("https" not in ports, "https port without certificates")

# Drain: the kubelet must wait for preStop + shutdown delay + grace.
server = config["server"]
pre_stop = ctr.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
needed = pre_stop + server["shutdown_delay_secs"] + server["shutdown_grace_secs"]
check(spec["terminationGracePeriodSeconds"] > needed,
      f"terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} <= "
      f"preStop {pre_stop} + shutdown_delay_secs + shutdown_grace_secs = {needed}")

# Security context.
sc, psc = ctr["securityContext"], spec["securityContext"]
check(sc.get("readOnlyRootFilesystem") is True, "root filesystem is writable")
check(sc.get("allowPrivilegeEscalation") is False, "privilege escalation allowed")
check("ALL" in sc.get("capabilities", {}).get("drop", []), "capabilities not dropped")
check(psc.get("runAsNonRoot") is True or sc.get("runAsNonRoot") is True, "may run as root")
check((psc.get("seccompProfile") or sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
      "no RuntimeDefault seccomp profile")

# --- cluster mode --------------------------------------------------------------------
peers = find("Service", lambda d: d["spec"].get("clusterIP") == "None"
             and any(p["name"] == "cluster" for p in d["spec"]["ports"]))
if "cluster" in config:
    cl = config["cluster"]
    expected = {"enabled": bool, "listen": str, "secret_file": str, "peers": list,
                "peer_dns": str, "refresh_secs": int, "forward_timeout_secs": int}
    check(set(cl) == set(expected), f"[cluster] keys {sorted(cl)} != {sorted(expected)}")
    for k, t in expected.items():
        check(isinstance(cl.get(k), t), f"cluster.{k} is not a {t.__name__}")
    check(cl.get("enabled") is True, "cluster.enabled is not true")
    check(ports.get("cluster") == port_of(cl["listen"]), "cluster port != cluster.listen")
    check(len(peers) == 1, "no headless peers Service")
    if peers:
        svc = peers[0]
        ns = svc["metadata"].get("namespace", "xmpp")
        host, port = cl["peer_dns"].rsplit(":", 1)
        check(host.startswith(f"{svc['metadata']['name']}.{ns}.svc."), "peer_dns does not name the peers Service")
        check(int(port) == svc["spec"]["ports"][0]["port"] == ports["cluster"], "peer_dns port mismatch")
        check(svc["spec"].get("publishNotReadyAddresses") is True,
              "peers Service must publish not-ready (draining) pods")
        check(svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items(),
              "peers Service does not select the pods")
    secret_dir = os.path.dirname(cl["secret_file"])
    vol = [n for n, p in mounts.items() if p == secret_dir]
    check(len(vol) == 1, f"nothing mounted at {secret_dir}")
    if vol:
        items = volumes[vol[0]]["secret"].get("items", [])
        check([i["path"] for i in items] == [os.path.basename(cl["secret_file"])],
              "the cluster Secret volume does not provide secret_file")
        name = volumes[vol[0]]["secret"]["secretName"]
        own = find("Secret", lambda d: d["metadata"]["name"] == name)
        for s in own:
            check(items[0]["key"] in s.get("data", {}), f"Secret {name} lacks key {items[0]['key']}")
    check(any(e["name"] == "POD_IP" for e in ctr.get("env", [])), "no POD_IP in cluster mode")
else:
    check(not peers, "headless peers Service without cluster mode")
    check("cluster" not in ports, "cluster port without cluster mode")

# --- NetworkPolicy: the cluster port only from the release's own pods ---------
for np in find("NetworkPolicy"):
    check(np["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(),
          "NetworkPolicy does not select the pods")
    rules = [r for r in np["spec"]["ingress"] if any(p["port"] == "cluster" for p in r["ports"])]
    if "cluster" in config:
        check(len(rules) == 1 and all("podSelector" in f and f["podSelector"]["matchLabels"].items()
                                      <= pod["metadata"]["labels"].items() for f in rules[0].get("from", [{}])),
              "NetworkPolicy lets more than the release's pods reach the cluster port")
    for name in ("http", "metrics"):
        check(any(any(p["port"] == name for p in r["ports"]) for r in np["spec"]["ingress"]),
              f"NetworkPolicy blocks the {name} port")

# --- Ingress -------------------------------------------------------------------------
max_wait = config.get("bosh", {}).get("max_wait_secs", 50)
for ing in find("Ingress"):
    ann = ing["metadata"].get("annotations", {})
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        value = int(ann.get(f"nginx.ingress.kubernetes.io/{key}", 60))
        check(value > max_wait, f"Ingress {key} {value} is not above bosh.max_wait_secs {max_wait}")
    check(ann.get("nginx.ingress.kubernetes.io/proxy-buffering") == "off", "Ingress buffers responses")
    paths = {p["path"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]}
    for p in config.get("bosh", {}).get("paths", ["/http-bind"]) + \
            config.get("websocket", {}).get("paths", ["/xmpp-websocket"]):
        check(p in paths, f"Ingress does not route {p}")
    for r in ing["spec"]["rules"]:
        for p in r["http"]["paths"]:
            if "." in p["path"]:
                check(p["pathType"] == "ImplementationSpecific",
                      f"{p['path']}: ingress-nginx refuses '.' in {p['pathType']} paths")

# --- autoscaler: the sessions metric must exist ----------------------------------
metrics_rs = open(os.path.join(chart, "..", "..", "src", "metrics.rs")).read()
for hpa in find("HorizontalPodAutoscaler"):
    check("replicas" not in dep["spec"], "Deployment sets replicas although an HPA scales it")
    for m in hpa["spec"]["metrics"]:
        if m["type"] == "Pods":
            name = m["pods"]["metric"]["name"]
            check(f'"{name}"' in metrics_rs, f"HPA metric {name} is not a metric of src/metrics.rs")
        if m["type"] == "Resource":
            check(ctr.get("resources", {}).get("requests", {}).get("cpu"), "CPU target without a CPU request")

# --- dashboard: the chart's JSON file, unchanged ----------------------------------
for d in find("ConfigMap", lambda d: "xmpp-edge.json" in d.get("data", {})):
    source = open(os.path.join(chart, "dashboards", "xmpp-edge.json")).read()
    check(d["data"]["xmpp-edge.json"].strip() == source.strip(), "dashboard ConfigMap differs from dashboards/xmpp-edge.json")
    json.loads(d["data"]["xmpp-edge.json"])
    check(d["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard ConfigMap lacks grafana_dashboard: \"1\"")

# --- ServiceMonitor scrapes the metrics port ---------------------------------------
for sm in find("ServiceMonitor"):
    sel = sm["spec"]["selector"]["matchLabels"]
    targets = find("Service", lambda s: sel.items() <= s["metadata"]["labels"].items())
    check(len(targets) == 1 and any(p["name"] == "metrics" for p in targets[0]["spec"]["ports"]),
          "ServiceMonitor does not select exactly the metrics Service")

for p in problems:
    print(f"    problem: {p}", file=sys.stderr)
kinds = sorted({d["kind"] for d in docs})
print(f"    rendered: {', '.join(kinds)}")
sys.exit(1 if problems else 0)
