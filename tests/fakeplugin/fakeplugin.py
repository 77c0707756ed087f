"""A scriptable fake CNI plugin (the harness writes a shebang for the venv python on install).

It only sees what a real plugin sees: the environment, the CNI_* variables and stdin. The
environment variable FAKECNI_DIR names a state dir holding:

* ``script.json``: ``{plugin name: {CNI_COMMAND or "*": rule or [rules]}}``. The plugin's name
  is the basename of argv[0], so one copy installed as ``fake-a`` and ``fake-b`` behaves as
  two plugins. A rule is a dict with any of:

  ``match``        {ENV_VAR: value} the rule applies only when all are equal (first match wins)
  ``stdout``       raw text printed on stdout (overrides everything below)
  ``result``       a JSON value printed on stdout
  ``stderr``       raw text printed on stderr
  ``exit``         exit code (default 0)
  ``sleep``        seconds to sleep before answering
  ``fork_sleep``   fork a child that sleeps this long holding stdout/stderr open
  ``omit_version`` drop ``cniVersion`` from the derived ADD result
  ``versions``     supportedVersions answered to VERSION
  ``legacy``       behave like a 0.1.0 plugin that predates VERSION (error code 4, exit 1)

  Without ``stdout``/``result``, ADD answers a result derived from ``prevResult`` (the previous
  result with an interface named after this plugin appended) or, with no prevResult, a fresh
  result in the config's version whose interface is CNI_IFNAME in CNI_NETNS; VERSION answers
  every version; other commands print nothing.

* ``log.jsonl``: one JSON line per event, appended under flock: ``{"event": "start", name,
  argv, env, stdin, stdin_b64, config, pid, child_pid, t}`` when the plugin starts (after
  reading stdin) and ``{"event": "end", name, pid, t}`` just before it exits.
"""

import base64
import fcntl
import json
import os
import sys
import time

ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
LEGACY_ERROR = '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'


def log(state, record):
    with open(os.path.join(state, "log.jsonl"), "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def pick_rule(script, name, command):
    rules = script.get(name, {})
    rule = rules.get(command, rules.get("*", {}))
    if isinstance(rule, dict):
        rule = [rule]
    for candidate in rule:
        if all(os.environ.get(k) == v for k, v in candidate.get("match", {}).items()):
            return candidate
    return {}


def derived_add_result(name, conf, rule):
    conf = conf if isinstance(conf, dict) else {}
    ver = conf.get("cniVersion", "")
    prev = conf.get("prevResult")
    if isinstance(prev, dict):
        res = json.loads(json.dumps(prev))
        if "ip4" not in res and "ip6" not in res:
            res.setdefault("interfaces", []).append({"name": name})
        return res
    if ver in ("", "0.1.0", "0.2.0"):
        res = {"ip4": {"ip": "10.22.0.5/16", "gateway": "10.22.0.1"}, "dns": {}}
    else:
        ip = {"interface": 0, "address": "10.22.0.5/16", "gateway": "10.22.0.1"}
        if ver in ("0.3.0", "0.3.1", "0.4.0"):
            ip["version"] = "4"
        iface = {"name": os.environ.get("CNI_IFNAME", "")}
        if os.environ.get("CNI_NETNS"):
            iface["sandbox"] = os.environ["CNI_NETNS"]
        res = {"interfaces": [iface], "ips": [ip], "dns": {}}
    if ver and not rule.get("omit_version"):
        res = {"cniVersion": ver, **res}
    return res


def main():
    name = os.path.basename(sys.argv[0])
    command = os.environ.get("CNI_COMMAND", "")
    state = os.environ.get("FAKECNI_DIR")
    if not state:
        sys.stderr.write("fakeplugin: FAKECNI_DIR is not set")
        return 2
    stdin = sys.stdin.buffer.read()
    try:
        conf = json.loads(stdin)
    except ValueError:
        conf = None
    try:
        with open(os.path.join(state, "script.json"), encoding="utf-8") as fh:
            script = json.load(fh)
    except FileNotFoundError:
        script = {}
    rule = pick_rule(script, name, command)

    child = None
    if rule.get("fork_sleep"):
        child = os.fork()
        if child == 0:  # keeps the inherited stdout/stderr open while it sleeps
            try:
                time.sleep(float(rule["fork_sleep"]))
            finally:
                os._exit(0)

    log(state, {
        "event": "start", "name": name, "argv": sys.argv, "env": dict(os.environ),
        "stdin": stdin.decode("utf-8", "replace"), "stdin_b64": base64.b64encode(stdin).decode(),
        "config": conf, "pid": os.getpid(), "child_pid": child, "t": time.time(),
    })
    if rule.get("sleep"):
        time.sleep(float(rule["sleep"]))

    code = int(rule.get("exit", 0))
    if rule.get("legacy") and command == "VERSION":
        out, code = LEGACY_ERROR, 1
    elif "stdout" in rule:
        out = rule["stdout"]
    elif "result" in rule:
        out = json.dumps(rule["result"])
    elif command == "ADD" and code == 0:
        out = json.dumps(derived_add_result(name, conf, rule))
    elif command == "VERSION" and code == 0:
        out = json.dumps({"cniVersion": "1.1.0", "supportedVersions": rule.get("versions", ALL_VERSIONS)})
    else:
        out = ""
    sys.stdout.write(out)
    sys.stdout.flush()
    if rule.get("stderr"):
        sys.stderr.write(rule["stderr"])
        sys.stderr.flush()
    log(state, {"event": "end", "name": name, "pid": os.getpid(), "t": time.time()})
    return code


if __name__ == "__main__":
    sys.exit(main())
