#!/usr/bin/env python3
"""Checks of tether's deployment assets that need more than a shell one-liner.

Called by tests/deploy/check.sh, one subcommand per check; each prints what it found
and exits non-zero on a problem. Needs Python >= 3.11 (tomllib) and PyYAML.

The repository's docs are the contract: metric names, types and labels come from the
table in docs/metrics.md ("## Metrics"), config keys and their types from the key tables
of docs/config.md, and the alerts with their severity and lane from the table in
docs/deploy.md ("## Monitoring").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/tether/files/tether.rules.yml"
RULES_TEST = ROOT / "deploy/prometheus/tether.rules.test.yml"
INHIBIT = ROOT / "deploy/prometheus/alertmanager-inhibit.yml"
DASHBOARD = ROOT / "charts/tether/files/tether-dashboard.json"
METRICS_DOC = ROOT / "docs/metrics.md"
CONFIG_DOC = ROOT / "docs/config.md"
DEPLOY_DOC = ROOT / "docs/deploy.md"
SCRAPE_LABELS = {"instance", "job"}
SEVERITIES = {"critical", "warning", "info"}

problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)
    print(f"  problem: {msg}")


def done(what: str) -> int:
    if problems:
        print(f"  {len(problems)} problem(s) in {what}")
        return 1
    print(f"  {what}: fine")
    return 0


# ------------------------------------------------------------------ the docs
def table_rows(text: str, heading: str, columns: int) -> list[list[str]]:
    """The cells of every `columns`-wide table row in the section under `heading`."""
    m = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not m:
        raise SystemExit(f"no '{heading}' section")
    rows = []
    for line in m.group(1).splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == columns and not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows[1:]  # the header row


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the metrics table of docs/metrics.md."""
    out = {}
    for name, typ, labels in table_rows(METRICS_DOC.read_text(), "## Metrics", 3):
        names = {lab.split("=")[0].strip() for lab in labels.split(",") if lab.strip()}
        out[name] = (typ.split()[0], names)
    return out


def documented_alerts() -> dict[str, tuple[str, bool]]:
    """alert -> (severity, on the security lane) from the alert table of docs/deploy.md."""
    out = {}
    for name, severity, _runbook in table_rows(DEPLOY_DOC.read_text(), "## Monitoring", 3):
        out[name.strip("`")] = (severity.split()[0].strip(","), "lane security" in severity)
    return out


def cmd_metrics_table() -> int:
    metrics = documented_metrics()
    print(f"  {len(metrics)} metrics in {METRICS_DOC.relative_to(ROOT)}: {', '.join(sorted(metrics))}")
    if len(metrics) < 10:
        problem(f"only {len(metrics)} metrics parsed from {METRICS_DOC.relative_to(ROOT)}: has its table changed shape?")
    for name, (typ, _) in metrics.items():
        if not re.fullmatch(r"tether_[a-z0-9_]+", name):
            problem(f"{name!r} is not a tether_ metric name")
        if typ not in ("gauge", "counter", "histogram"):
            problem(f"{name}: type {typ!r} is not gauge, counter or histogram")
    return done("metric table")


# ------------------------------------------------------------------ PromQL
METRIC_RE = re.compile(r"\b(tether_[a-z0-9_]+)")
SELECTOR_RE = re.compile(r"\b(tether_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def resolve(name: str, metrics) -> tuple[str, set[str]] | None:
    """A queried series name -> labels it may carry, or None when the docs lack it."""
    if name in metrics:
        return name, metrics[name][1] | SCRAPE_LABELS
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and metrics.get(base, ("",))[0] == "histogram":
            extra = {"le"} if suffix == "_bucket" else set()
            return base, metrics[base][1] | SCRAPE_LABELS | extra
    return None


def check_expr(where: str, expr: str, metrics, used: set[str]) -> None:
    names = set(METRIC_RE.findall(expr))
    allowed_labels = set(SCRAPE_LABELS)
    for n in sorted(names):
        r = resolve(n, metrics)
        if r is None:
            problem(f"{where}: queries {n}, which is not in the table of docs/metrics.md")
            continue
        used.add(r[0])
        allowed_labels |= r[1]
    for n, matchers in SELECTOR_RE.findall(expr):
        r = resolve(n, metrics)
        if r is None:
            continue
        for lab in MATCHER_RE.findall(matchers):
            if lab not in r[1]:
                problem(f"{where}: {n} has no label {lab!r} (documented labels: {sorted(r[1] - SCRAPE_LABELS)})")
    if names:
        for group in GROUPING_RE.findall(expr):
            for lab in [g.strip() for g in group.split(",") if g.strip()]:
                if lab not in allowed_labels:
                    problem(f"{where}: groups by {lab!r}, a label none of its tether metrics has")


# ------------------------------------------------------------------ alert rules
def load_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [(g["name"], r) for g in doc["groups"] for r in g["rules"]]


def cmd_rules() -> int:
    metrics = documented_metrics()
    documented = documented_alerts()
    doc = yaml.safe_load(RULES.read_text())
    groups = doc.get("groups", [])
    if len(groups) != 1:
        problem(f"expected the alerts in one group, found {len(groups)}")
    alerts = {}
    used: set[str] = set()
    for gname, r in load_rules():
        name = r.get("alert")
        if not name:
            continue
        alerts[name] = r
        if not re.fullmatch(r"Tether[A-Z][A-Za-z0-9]*", name):
            problem(f"{name}: not a CamelCase name starting with Tether")
        labels = r.get("labels") or {}
        if labels.get("severity") not in SEVERITIES:
            problem(f"{name}: severity {labels.get('severity')!r} is not one of {sorted(SEVERITIES)}")
        if name not in documented:
            problem(f"{name}: not in the alert table of docs/deploy.md")
        else:
            severity, security = documented[name]
            if labels.get("severity") != severity:
                problem(f"{name}: severity {labels.get('severity')!r}, docs/deploy.md says {severity!r}")
            if security != (labels.get("lane") == "security"):
                want = "on" if security else "off"
                problem(f"{name}: docs/deploy.md puts it {want} the security lane, the rule does not")
        ann = r.get("annotations") or {}
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problem(f"{name}: no {key} annotation")
        rb = ann.get("runbook_url", "")
        if rb and not (ROOT / rb.split("#")[0]).is_file():
            problem(f"{name}: runbook {rb} does not exist")
        check_expr(f"alert {name}", r["expr"], metrics, used)
    missing = documented.keys() - alerts.keys()
    if missing:
        problem(f"alerts in docs/deploy.md that have no rule: {sorted(missing)}")
    if alerts.get("TetherLaptopUnreachable", {}).get("labels", {}).get("severity") == "critical":
        problem("TetherLaptopUnreachable must not page: a sleeping laptop is a normal state")
    print(f"  {len(alerts)} alerts: {', '.join(alerts)}")
    print(f"  metrics queried: {', '.join(sorted(used))}")
    return done("alert rules conventions and metric names")


def cmd_rules_coverage() -> int:
    alerts = [r["alert"] for _, r in load_rules() if r.get("alert")]
    tests = yaml.safe_load(RULES_TEST.read_text())
    firing, quiet = set(), set()
    for t in tests["tests"]:
        for a in t.get("alert_rule_test", []):
            (firing if a.get("exp_alerts") else quiet).add(a["alertname"])
    for a in alerts:
        if a not in firing:
            problem(f"{a}: no promtool test case where it fires")
        if a not in quiet:
            problem(f"{a}: no promtool test case where it stays quiet")
    unknown = (firing | quiet) - set(alerts)
    if unknown:
        problem(f"tests name alerts that do not exist: {sorted(unknown)}")
    print(f"  {len(alerts)} alerts, each with firing and not-firing cases" if not problems else "")
    return done("promtool test coverage")


def cmd_inhibit() -> int:
    alerts = {r["alert"]: r for _, r in load_rules() if r.get("alert")}
    doc = yaml.safe_load(INHIBIT.read_text())
    for i, rule in enumerate(doc.get("inhibit_rules", [])):
        for side in ("source_matchers", "target_matchers"):
            for m in rule.get(side, []):
                mm = re.fullmatch(r'alertname\s*(=~|=)\s*"([^"]*)"', m)
                if not mm:
                    continue
                names = mm.group(2).split("|") if mm.group(1) == "=~" else [mm.group(2)]
                for n in names:
                    if n not in alerts:
                        problem(f"inhibit rule {i}: {side} names {n}, which is not an alert")
                    elif side == "target_matchers" and alerts[n].get("labels", {}).get("lane") == "security":
                        problem(f"inhibit rule {i}: security alert {n} must never be inhibited")
        if not rule.get("equal"):
            problem(f"inhibit rule {i}: no `equal` labels: it would silence every instance")
    return done("Alertmanager inhibition rules")


# ------------------------------------------------------------------ dashboard
def dashboard_exprs(d) -> list[tuple[str, str]]:
    out = []

    def walk(node, where):
        if isinstance(node, dict):
            title = node.get("title", where)
            for k, v in node.items():
                if k in ("expr",) and isinstance(v, str):
                    out.append((f"panel {title!r}", v))
                elif k == "definition" and isinstance(v, str):
                    out.append((f"variable {node.get('name')!r}", v))
                else:
                    walk(v, title)
        elif isinstance(node, list):
            for x in node:
                walk(x, where)

    walk(d, "dashboard")
    return out


def cmd_dashboard(promtool: str) -> int:
    metrics = documented_metrics()
    d = json.loads(DASHBOARD.read_text())
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in d:
            problem(f"dashboard has no {key!r}")
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(ids) != len(set(ids)):
        problem("panel ids are not unique")
    exprs = dashboard_exprs(d)
    used: set[str] = set()
    for where, e in exprs:
        check_expr(where, e, metrics, used)
    unused = set(metrics) - used
    if unused:
        problem(f"metrics the dashboard never shows: {sorted(unused)}")
    # every panel query must be valid PromQL: promtool parses them as recording rules
    subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*", "$target": ".*"}
    rules = []
    for i, (where, e) in enumerate(exprs):
        if e.startswith("label_values("):
            inner = re.fullmatch(r"label_values\((.*),\s*[a-z_]+\)", e)
            if not inner:
                problem(f"{where}: cannot read {e}")
                continue
            e = inner.group(1)
        for k, v in subst.items():
            e = e.replace(k, v)
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"tether-dashboard-queries-{os.getpid()}.yml"
    tmp.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    try:
        r = subprocess.run([promtool, "check", "rules", str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            problem("a dashboard query is not valid PromQL:\n" + r.stdout + r.stderr)
    finally:
        tmp.unlink()
    print(f"  {len(d.get('panels', []))} panels, {len(exprs)} queries, metrics: {', '.join(sorted(used))}")
    return done("dashboard")


# ------------------------------------------------------------------ Dockerfile
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if s.startswith("#") and not cur and not s.startswith("# syntax"):
            continue
        if s.startswith("#") and cur:
            continue  # comment inside a continuation
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        if cur.strip():
            parts = cur.strip().split(None, 1)
            lines.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        cur = ""
    return lines


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    p = ROOT / ".dockerignore"
    pats = []
    if not p.exists():
        return pats
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat[i:i + 3] == "**/":
                rx += "(?:.*/)?"
                i += 3
            elif pat[i:i + 2] == "**":
                rx += ".*"
                i += 2
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        pats.append((neg, re.compile(rx + r"\Z")))
    return pats


def ignored(rel: str, pats) -> bool:
    """Docker semantics: the last matching pattern wins; a match on a parent counts."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for neg, rx in pats:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


def dockerfile_stages(ins: list[tuple[str, str]]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(name, base, instructions) per stage; name is "" for an unnamed stage."""
    stages: list[tuple[str, str, list[tuple[str, str]]]] = []
    for k, args in ins:
        if k == "FROM":
            words = args.split()
            name = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append((name, words[0].lower(), []))
        elif stages:
            stages[-1][2].append((k, args))
    return stages


def stage_chain(stages, index: int) -> list[tuple[str, str]]:
    """The instructions of stage `index` with those of the stages it is built FROM."""
    name, base, own = stages[index]
    parents = [i for i, (n, _, _) in enumerate(stages[:index]) if n and n == base]
    return (stage_chain(stages, parents[-1]) if parents else []) + own


def cmd_dockerfile() -> int:
    text = (ROOT / "Dockerfile").read_text()
    ins = dockerfile_instructions(text)
    pats = dockerignore_patterns()
    froms = [a for k, a in ins if k == "FROM"]
    if len(froms) < 2:
        problem("not a multi-stage build")
    stages = dockerfile_stages(ins)
    copied: list[str] = []
    for name, _, stage_ins in stages:
        if name == "prebuilt":
            # its context is made by scripts/prebuilt-context.sh, not the repository
            print("  stage prebuilt: COPY sources come from scripts/prebuilt-context.sh")
            continue
        copied += dockerfile_context_sources(stage_ins, pats)
    check_crate_sources_copied(copied)
    final_index = len(stages) - 1
    prebuilt = [i for i, (n, _, _) in enumerate(stages) if n == "prebuilt"]
    if prebuilt and stages[prebuilt[0]][1] != stages[final_index][1]:
        problem(f"stage prebuilt is built FROM {stages[prebuilt[0]][1]}, the final stage FROM "
                f"{stages[final_index][1]}: they must share the same runtime stage")
    for label, index in [("final stage", final_index)] + [("stage prebuilt", i) for i in prebuilt]:
        check_runtime_lines(label, stage_chain(stages, index))
    print(f"  stages: {len(froms)}; final: {froms[-1]}")
    return done("Dockerfile")


def dockerfile_context_sources(ins: list[tuple[str, str]], pats) -> list[str]:
    """Checks that every COPY/ADD source of these instructions is sent to the builder."""
    copied: list[str] = []
    for k, args in ins:
        if k not in ("COPY", "ADD"):
            continue
        if args.startswith("["):
            words = json.loads(args)
        else:
            words = args.split()
        flags = [w for w in words if w.startswith("--")]
        rest = [w for w in words if not w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        for src in rest[:-1]:
            copied.append(src.rstrip("/") or ".")
            path = ROOT / src
            if not path.exists():
                problem(f"{k} {src}: no such file or directory in the build context")
                continue
            files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
            kept = [f for f in files if not ignored(str(f.relative_to(ROOT)), pats)]
            if not kept:
                problem(f"{k} {src}: excluded by .dockerignore")
            print(f"  {k} {src}: exists, {len(kept)} file(s) sent to the builder")
    return copied


def check_crate_sources_copied(copied: list[str]) -> None:
    # what the crate needs besides Cargo.toml, Cargo.lock and src/
    cargo = (ROOT / "Cargo.toml").read_text()
    needs = []
    if (ROOT / "build.rs").exists() or re.search(r'^\s*build\s*=', cargo, re.M):
        needs.append("build.rs")
    for section, d in (("bench", "benches"), ("example", "examples"), ("test", "tests")):
        if re.search(rf"^\[\[{section}\]\]", cargo, re.M):
            needs.append(d)
    for n in needs:
        if n not in copied:
            problem(f"the crate declares {n} but the Dockerfile does not COPY it: cargo would fail")


def check_runtime_lines(label: str, final: list[tuple[str, str]]) -> None:
    """The lines every tether image must have (final: a stage's instructions with its parents')."""
    keys = {k: a for k, a in final}
    if keys.get("ENTRYPOINT", "").replace(" ", "") != '["tether"]':
        problem(f'{label}: ENTRYPOINT is {keys.get("ENTRYPOINT")!r}, want ["tether"]')
    if keys.get("CMD", "").replace(" ", "") != '["serve"]':
        problem(f'{label}: CMD is {keys.get("CMD")!r}, want ["serve"]')
    hc = keys.get("HEALTHCHECK", "")
    if '["tether","check","--ready"]' not in hc.replace(" ", ""):
        problem(f"{label}: HEALTHCHECK does not run tether check --ready in exec form: {hc!r}")
    user = keys.get("USER", "")
    if not user or user.split(":")[0] in ("0", "root"):
        problem(f"{label}: USER {user!r} is not a non-root user")
    copies = " ".join(a for k, a in final if k == "COPY")
    if "/etc/tether/tether.toml" not in copies:
        problem(f"{label}: the example config is not copied to /etc/tether/tether.toml")
    if "/usr/local/bin/tether" not in copies:
        problem(f"{label}: no tether binary is copied to /usr/local/bin/tether")
    print(f"  {label}: USER {user}, ENTRYPOINT {keys.get('ENTRYPOINT')}")


# ------------------------------------------------------------------ compose
def seconds(d: str) -> float:
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(d)):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
    return total


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def cmd_compose() -> int:
    text = (ROOT / "compose.yaml").read_text()
    c = yaml.safe_load(text)
    svcs = c.get("services", {})
    t, app = svcs.get("tether"), svcs.get("app")
    if not t or not app:
        problem("compose.yaml needs services app and tether")
        return done("compose.yaml")
    if t.get("healthcheck", {}).get("test") != ["CMD", "tether", "check", "--ready"]:
        problem(f"tether healthcheck is {t.get('healthcheck', {}).get('test')}, want [CMD, tether, check, --ready]")
    env = t.get("environment", {})
    grace = seconds(str(env.get("TETHER_SERVER__SHUTDOWN_GRACE", "30s")))
    stop = seconds(str(t.get("stop_grace_period", "10s")))
    if stop <= grace:
        problem(f"stop_grace_period {stop}s is not longer than shutdown_grace {grace}s")
    for name, s in svcs.items():
        if s.get("network_mode") == "host":
            problem(f"{name}: network_mode: host (the tailnet is reached through the host's NAT)")
    for name in ("tether", "app"):
        if svcs[name].get("restart") != "unless-stopped":
            problem(f"{name}: restart is not unless-stopped")
    if t.get("ports"):
        problem("tether publishes ports on the host: the admin port belongs on the monitoring network only")
    if set(t.get("networks", [])) != {"monitoring"}:
        problem(f"tether networks are {t.get('networks')}, want only monitoring")
    if "monitoring" in (app.get("networks") or []):
        problem("the app is on the monitoring network")

    def run_volume(s):
        for v in s.get("volumes", []):
            if isinstance(v, dict) and v.get("target") == "/run/tether" and v.get("type") == "volume":
                return v.get("source")
            if isinstance(v, str) and v.split(":")[1:2] == ["/run/tether"]:
                return v.split(":")[0]
    vt, va = run_volume(t), run_volume(app)
    if not vt or vt != va or vt not in (c.get("volumes") or {}):
        problem(f"app and tether do not share a named volume at /run/tether ({va} / {vt})")
    if str(env.get("TETHER_SERVER__SOCKET_MODE")) != "0660":
        problem("TETHER_SERVER__SOCKET_MODE is not 0660")
    if "65532" not in [str(g) for g in app.get("group_add", [])]:
        problem("the app is not in tether's group 65532 (group_add): it could not open a 0660 socket")
    for k in ("PALIADIN_REMOTE_HOST", "PALIADIN_REMOTE_USER", "PALIADIN_SSH_PRIVATE_KEY", "PALIADIN_KNOWN_HOSTS"):
        if k not in env:
            problem(f"tether's environment lacks {k}")
    # every variable compose interpolates is documented in .env.example
    documented = env_example()
    for var, op in re.findall(r"\$\{([A-Z][A-Z0-9_]*)(:?[-?]?)", text):
        if var not in documented:
            problem(f"compose.yaml uses ${{{var}}} but .env.example does not mention it")
    # bind mounts name files that exist
    for name, s in svcs.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else (v.get("source") if v.get("type") == "bind" else None)
            if src and src.startswith("."):
                if not (ROOT / src).exists():
                    problem(f"{name}: bind mount source {src} does not exist")
    print(f"  services: {', '.join(svcs)}; stop_grace_period {stop}s > shutdown_grace {grace}s")
    return done("compose.yaml conventions")


def cmd_compose_env(envfile: str) -> int:
    """Print tether's environment from compose.yaml, interpolated with ENVFILE, as NAME=VALUE\\0."""
    vals = {}
    for line in Path(envfile).read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            v = m.group(2)
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1]
            vals[m.group(1)] = v
    env = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["tether"]["environment"]

    def interp(s: str) -> str:
        def rep(m):
            name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
            v = vals.get(name, "")
            if op in (":-", "-") and not v:
                return arg
            if op in (":?", "?") and not v:
                raise SystemExit(f"compose would refuse: {name}: {arg}")
            return v
        return re.sub(r"\$\{([A-Z][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}", rep, s)

    out = [f"{k}={interp(str(v))}" for k, v in env.items()]
    sys.stdout.write("\0".join(out))
    return 0


# ------------------------------------------------------------------ chart
def docs(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def cmd_chart_split(rendered: str, outdir: str) -> int:
    """Write each non-CRD object to OUTDIR for kubernetes-validate; print their names."""
    Path(outdir).mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(docs(rendered)):
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        (Path(outdir) / f"{i:02d}-{d['kind']}.yaml").write_text(yaml.safe_dump(d))
    return 0


def cmd_chart_config(rendered: str, out: str) -> int:
    """Write the tether.toml of the rendered ConfigMap to OUT."""
    for d in docs(rendered):
        if d["kind"] == "ConfigMap" and "tether.toml" in d.get("data", {}):
            Path(out).write_text(d["data"]["tether.toml"])
            return 0
    print("  no ConfigMap with tether.toml in the rendering")
    return 1


def cmd_chart_assert(rendered: str, mode: str) -> int:
    objs = docs(rendered)
    kinds = {}
    for d in objs:
        kinds.setdefault(d["kind"], []).append(d)
    dep = kinds["Deployment"][0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    ru = spec.get("strategy", {}).get("rollingUpdate", {})
    if (ru.get("maxSurge"), ru.get("maxUnavailable")) != (1, 0):
        problem(f"rollingUpdate is {ru}, want maxSurge 1 / maxUnavailable 0")
    ann = spec["template"]["metadata"].get("annotations", {})
    for a in ("checksum/config", "checksum/secret"):
        if not re.fullmatch(r"[0-9a-f]{64}", str(ann.get(a, ""))):
            problem(f"pod annotation {a} missing")
    inits = {c["name"]: c for c in pod.get("initContainers", [])}
    mains = {c["name"]: c for c in pod.get("containers", [])}
    if mode == "native":
        t = inits.get("tether")
        if not t or t.get("restartPolicy") != "Always" or "tether" in mains:
            problem("native mode: tether is not an init container with restartPolicy: Always")
    else:
        t = mains.get("tether")
        if not t or "tether" in inits:
            problem("classic mode: tether is not in containers")
    if not t:
        return done("chart structure")
    app = [c for n, c in mains.items() if n != "tether"]
    if len(app) != 1:
        problem(f"expected one app container, found {len(app)}")
    probes = {p: t.get(p, {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe", "startupProbe")}
    if probes != {"livenessProbe": "/livez", "readinessProbe": "/readyz", "startupProbe": "/readyz"}:
        problem(f"tether probes are {probes}")
    for c in [t] + app:
        res = c.get("resources", {})
        if "cpu" in res.get("limits", {}):
            problem(f"{c['name']}: has a CPU limit")
        if "memory" not in res.get("limits", {}) or not res.get("requests"):
            problem(f"{c['name']}: needs requests and a memory limit")
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")
                and sc.get("allowPrivilegeEscalation") is False
                and sc.get("capabilities", {}).get("drop") == ["ALL"]):
            problem(f"{c['name']}: securityContext is not restrictive: {sc}")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    run = vols.get("tether-run", {})
    if "emptyDir" not in run:
        problem("the socket directory is not an emptyDir")
    mounts_t = {m["name"]: m["mountPath"] for m in t.get("volumeMounts", [])}
    mounts_a = {m["name"]: m["mountPath"] for m in app[0].get("volumeMounts", [])} if app else {}
    if mounts_t.get("tether-run") is None or mounts_t.get("tether-run") != mounts_a.get("tether-run"):
        problem("app and tether do not mount the socket emptyDir at the same path")
    if "tether-secrets" not in mounts_t or "secret" not in vols.get("tether-secrets", {}):
        problem("the Secret is not mounted into tether")
    if "tether-secrets" in mounts_a:
        problem("the app mounts tether's Secret")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    cfg = tomllib.loads([d for d in kinds["ConfigMap"] if "tether.toml" in d.get("data", {})][0]["data"]["tether.toml"])
    sg = seconds(cfg["server"].get("shutdown_grace", "30s"))
    if grace <= sg:
        problem(f"terminationGracePeriodSeconds {grace} is not longer than shutdown_grace {sg}s")
    sock_dir = mounts_t.get("tether-run", "")
    if not cfg["server"]["socket"].startswith(sock_dir + "/"):
        problem(f"server.socket {cfg['server']['socket']} is not in the shared directory {sock_dir}")
    port = [p for p in t.get("ports", []) if p.get("name") == "admin"]
    if not port or not cfg["server"]["admin_addr"].endswith(f":{port[0]['containerPort']}"):
        problem("admin_addr and the admin containerPort disagree")
    svc = [s for s in kinds.get("Service", []) if s["metadata"]["name"].endswith("-metrics")]
    if not svc:
        problem("no metrics Service")
    if mode == "native":
        for k in ("ServiceMonitor", "PrometheusRule"):
            if k not in kinds:
                problem(f"{k} not rendered although enabled")
        if ann.get("reloader.stakater.com/auto") != "true":
            problem("reloader annotation not rendered although enabled")
        pr = kinds.get("PrometheusRule", [{}])[0].get("spec", {})
        want = yaml.safe_load(RULES.read_text())
        got = json.loads(json.dumps(pr))
        for g in got.get("groups", []):
            for r in g["rules"]:
                url = r.get("annotations", {}).get("runbook_url", "")
                r.get("annotations", {})["runbook_url"] = re.sub(r"^https?://.*?/(docs/runbooks/)", r"\1", url)
        if got != want:
            problem("the PrometheusRule's groups differ from charts/tether/files/tether.rules.yml")
        sm = kinds.get("ServiceMonitor", [{}])[0]
        relabel = sm.get("spec", {}).get("endpoints", [{}])[0].get("relabelings", [])
        if not any(r.get("targetLabel") == "job" and r.get("replacement") == "tether" for r in relabel):
            problem("the ServiceMonitor does not set job=tether, which the alert rules select")
        dash = [d for d in kinds["ConfigMap"] if "tether-dashboard.json" in d.get("data", {})]
        if not dash or json.loads(dash[0]["data"]["tether-dashboard.json"]) != json.loads(DASHBOARD.read_text()):
            problem("the dashboard ConfigMap differs from charts/tether/files/tether-dashboard.json")
    print(f"  {mode}: " + ", ".join(f"{k} x{len(v)}" for k, v in sorted(kinds.items())))
    return done(f"chart structure ({mode})")


# ------------------------------------------------------------------ config keys
def documented_config_keys() -> dict[str, dict[str, type]]:
    """Section (server, target, probe, verb) -> key -> python type, from docs/config.md."""
    text = CONFIG_DOC.read_text()
    out: dict[str, dict[str, type]] = {}
    for section, heading in (("server", "[server]"), ("target", "[targets.NAME]"),
                             ("probe", "[targets.NAME.probe]"), ("verb", "[verbs.NAME]")):
        out[section] = {}
        for key, typ, _default, _meaning in table_rows(text, f"## `{heading}`", 4):
            if typ.startswith("array"):
                want = list
            elif typ == "integer":
                want = int
            elif typ == "boolean":
                want = bool
            else:  # string, path, duration, `IP:PORT`, …
                want = str
            out[section][key.strip("`")] = want
    return out


def cmd_config_keys(path: str) -> int:
    """Without the binary: the rendered config uses only documented keys and types."""
    cfg = tomllib.loads(Path(path).read_text())
    keys = documented_config_keys()

    def check(section, table, where):
        for k, v in table.items():
            if isinstance(v, dict) and section == "target" and k == "probe":
                check("probe", v, f"{where}.probe")
                continue
            want = keys.get(section, {}).get(k)
            if want is None:
                problem(f"{where}.{k}: not a key in docs/config.md")
            elif not isinstance(v, want) or (want is int and isinstance(v, bool)):
                problem(f"{where}.{k} = {v!r}: docs/config.md has a {want.__name__}")

    for top, v in cfg.items():
        if top == "server":
            check("server", v, "server")
        elif top == "targets":
            for name, t in v.items():
                if not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
                    problem(f"target name {name!r} does not match [a-z0-9_-]{{1,32}}")
                check("target", t, f"targets.{name}")
        elif top == "verbs":
            for name, t in v.items():
                check("verb", t, f"verbs.{name}")
        else:
            problem(f"{top}: not a section in docs/config.md")
    return done(f"{Path(path).name}: keys and types are the documented ones")


# ------------------------------------------------------------------ runbooks
RUNBOOK_SECTIONS = ("## Scope", "## Alerts", "## Diagnose", "## Recover", "## Prevent")


def cmd_runbooks() -> int:
    alerts = {r["alert"]: r for _, r in load_rules() if r.get("alert")}
    books = sorted((ROOT / "docs/runbooks").glob("*.md"))
    for b in books:
        if b.name.lower() == "readme.md":
            continue
        text = b.read_text()
        last = -1
        for sec in RUNBOOK_SECTIONS:
            i = text.find("\n" + sec)
            if i < 0:
                problem(f"{b.relative_to(ROOT)}: no '{sec}' section")
            elif i < last:
                problem(f"{b.relative_to(ROOT)}: '{sec}' is out of order (Scope, Alerts, Diagnose, Recover, Prevent)")
            last = max(last, i)
    for name, r in alerts.items():
        rb = ROOT / r["annotations"]["runbook_url"].split("#")[0]
        if rb.is_file() and f"| {name} |" not in rb.read_text() and f"| `{name}` |" not in rb.read_text():
            problem(f"{name}: not in the Alerts table of {rb.relative_to(ROOT)}")
    index = ROOT / "docs/runbooks/README.md"
    if index.is_file():
        for b in books:
            if b.name != "README.md" and b.name not in index.read_text():
                problem(f"docs/runbooks/README.md does not link {b.name}")
    print(f"  {len(books)} runbook files")
    return done("runbooks")


def main(argv: list[str]) -> int:
    cmd, args = argv[1], argv[2:]
    fn = {
        "metrics-table": cmd_metrics_table, "rules": cmd_rules, "rules-coverage": cmd_rules_coverage,
        "inhibit": cmd_inhibit, "dashboard": cmd_dashboard, "dockerfile": cmd_dockerfile,
        "compose": cmd_compose, "compose-env": cmd_compose_env, "chart-split": cmd_chart_split,
        "chart-config": cmd_chart_config, "chart-assert": cmd_chart_assert,
        "config-keys": cmd_config_keys, "runbooks": cmd_runbooks,
    }[cmd]
    return fn(*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
