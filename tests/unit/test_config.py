"""Settings: defaults < config file (TOML or JSON) < flags; errors name the file and the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cri_net import config
from cri_net.cli.parser import build_parser
from cri_net.config import ConfigFileError, Settings, build, from_args, load_file

CLI = Path(sys.executable).with_name("cri-net")

DEFAULTS = {
    "listen": "unix:///run/cri-net/cri-net.sock",
    "conf_dir": "/etc/cri-net/net.d",
    "bin_dirs": ["/opt/cni/bin", "/usr/lib/cni"],
    "cache_dir": "/var/lib/cni",
    "state_dir": "/var/lib/cri-net",
    "cni_listen": None,
    "netns_dir": "/run/cri-net/netns",
    "default_network": None,
    "delegate_conf_dir": None,
    "plugin_timeout": 60.0,
    "ip_pref": "ipv4",
    "log_level": "info",
    "log_format": "text",
    "conf_poll_interval": 5.0,
    "metrics_listen": None,
    "gc_interval": 300.0,
    "parallel_attach": True,
}
#: `config show` prints the handoff socket cni_listen resolves to, never null
SHOWN = {**DEFAULTS, "cni_listen": "/run/cri-net/cni.sock"}


@pytest.fixture(autouse=True)
def no_default_file(monkeypatch, tmp_path):
    """Keep a real /etc/cri-net/config.toml on the test machine out of the picture."""
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", str(tmp_path / "absent.toml"))


def show_args(*argv: str):
    return build_parser().parse_args(["config", "show", *argv])


def test_defaults():
    assert Settings().model_dump() == DEFAULTS
    assert build().model_dump() == DEFAULTS
    assert from_args(show_args()).model_dump() == DEFAULTS


def test_toml_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('conf_dir = "/x/net.d"\nbin-dirs = ["/b1", "/b2"]\nplugin_timeout = 5\n'
                 'ip_pref = "ipv6"\nconf-poll-interval = 0.5\ndefault_network = "n1"\n')
    s = build(str(f))
    assert s.conf_dir == "/x/net.d"
    assert s.bin_dirs == ["/b1", "/b2"]  # dashed keys are accepted as underscores
    assert s.plugin_timeout == 5.0
    assert s.ip_pref == "ipv6"
    assert s.conf_poll_interval == 0.5
    assert s.default_network == "n1"
    assert s.state_dir == DEFAULTS["state_dir"]  # untouched keys keep their defaults


def test_json_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"state_dir": "/s/", "netns-dir": "/n//x", "log_format": "json"}))
    s = build(str(f))
    assert s.state_dir == "/s"  # normalised
    assert s.netns_dir == "/n/x"
    assert s.log_format == "json"
    assert load_file(str(f)) == {"state_dir": "/s/", "netns_dir": "/n//x", "log_format": "json"}


def test_flags_override_file_override_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('conf_dir = "/file/conf"\ncache_dir = "/file/cache"\nbin_dirs = ["/file/bin"]\nip_pref = "cni"\n')
    args = show_args("--config", str(f), "--conf-dir", "/flag/conf", "--bin-dir", "/flag/bin1",
                     "--bin-dir", "/flag/bin2", "--plugin-timeout", "7")
    s = from_args(args)
    assert s.conf_dir == "/flag/conf"  # flag beats file
    assert s.bin_dirs == ["/flag/bin1", "/flag/bin2"]  # a repeated flag replaces the file's list
    assert s.plugin_timeout == 7.0  # flag beats default
    assert s.cache_dir == "/file/cache"  # file beats default
    assert s.ip_pref == "cni"
    assert s.state_dir == DEFAULTS["state_dir"]
    assert build(str(f), {"cache_dir": None}).cache_dir == "/file/cache"  # an unset flag does not erase


def test_default_config_file_is_used_when_present(tmp_path, monkeypatch):
    f = tmp_path / "default.toml"
    f.write_text('state_dir = "/from/default"\n')
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", str(f))
    assert from_args(show_args()).state_dir == "/from/default"


@pytest.mark.parametrize("suffix, text", [
    (".toml", 'conf_dir = "/x"\nbogus_key = 1\n'),
    (".json", '{"conf_dir": "/x", "bogus_key": 1}'),
])
def test_unknown_key_names_file_and_key(tmp_path, suffix, text):
    f = tmp_path / f"c{suffix}"
    f.write_text(text)
    with pytest.raises(ConfigFileError) as info:
        build(str(f))
    assert str(f) in str(info.value)
    assert "bogus_key" in str(info.value)


@pytest.mark.parametrize("key, value", [
    ("plugin_timeout", -1),
    ("plugin_timeout", 0),
    ("ip_pref", "x"),
    ("conf_dir", "relative/net.d"),
    ("state_dir", "state"),
    ("log_level", "loud"),
    ("conf_poll_interval", 0),
    ("plugin_timeout", float("inf")),  # passed gt=0, then every plugin run overflowed its deadline
    ("plugin_timeout", float("nan")),
    ("plugin_timeout", 1e20),
    ("plugin_timeout", 86401),
    ("conf_poll_interval", float("inf")),
    ("conf_poll_interval", 0.001),  # a busy loop
    ("gc_interval", -1),
    ("gc_interval", float("nan")),
    ("gc_interval", 1e20),
    ("gc_interval", 1e-9),
])
def test_bad_value_names_key(tmp_path, key, value):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({key: value}))
    with pytest.raises(ConfigFileError) as info:
        build(str(f))
    msg = str(info.value)
    assert str(f) in msg and key in msg
    with pytest.raises(ConfigFileError) as info:  # the same value given as a flag
        build(None, {key: value})
    assert info.value.args[0].startswith("flags: ") and key in str(info.value)


@pytest.mark.parametrize("name, text, what", [
    ("c.toml", "conf_dir = ", "not valid TOML"),
    ("c.json", "{", "not valid JSON"),
    ("c.json", "[1, 2]", "top level"),
    ("c.toml", b"\xff\xfe", "not valid TOML"),
])
def test_unparsable_file(tmp_path, name, text, what):
    f = tmp_path / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigFileError) as info:
        build(str(f))
    assert str(f) in str(info.value) and what in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read"):
        build(str(tmp_path / "nope.toml"))


# ---- `cri-net config show` through the console script -----------------------------------

def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *argv], capture_output=True, text=True, timeout=30)


def test_config_show_prints_effective_json(tmp_path):
    assert CLI.exists(), f"console script {CLI} not installed"
    f = tmp_path / "c.toml"
    f.write_text('conf_dir = "/file/conf"\nstate_dir = "/file/state"\nip_pref = "ipv6"\n')
    proc = run_cli("config", "show", "--config", str(f), "--state-dir", "/flag/state", "--listen", "/tmp/x.sock",
                   "--netns-dir", "/flag/netns", "--log-level", "debug")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown == {**DEFAULTS, "conf_dir": "/file/conf", "state_dir": "/flag/state", "ip_pref": "ipv6",
                     "listen": "/tmp/x.sock", "netns_dir": "/flag/netns", "log_level": "debug",
                     "cni_listen": "/tmp/cni.sock"}


@pytest.mark.skipif(os.path.exists("/etc/cri-net/config.toml"), reason="a real default config file exists")
def test_config_show_defaults():
    proc = run_cli("config", "show")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == SHOWN


@pytest.mark.parametrize("flag,shown", [("/tmp/h/handoff.sock", "/tmp/h/handoff.sock"),
                                        ("unix:///tmp/h/h.sock", "/tmp/h/h.sock"), ("", "")])
def test_config_show_cni_listen_is_the_resolved_path(flag, shown):
    proc = run_cli("config", "show", "--cni-listen", flag, "--listen", "/tmp/h/cri.sock")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cni_listen"] == shown


def test_config_show_relative_cni_listen_fails_naming_it():
    proc = run_cli("config", "show", "--cni-listen", "rel/cni.sock")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "rel/cni.sock" in proc.stderr


def test_metrics_listen_is_validated_naming_the_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('metrics_listen = "nohostport"\n')
    proc = run_cli("config", "show", "--config", str(f))
    assert proc.returncode == 1 and proc.stdout == ""
    assert str(f) in proc.stderr and "metrics_listen" in proc.stderr and "HOST:PORT" in proc.stderr
    assert build(overrides={"metrics_listen": "127.0.0.1:0"}).metrics_listen == "127.0.0.1:0"


def test_config_show_error_names_file_and_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("plugin_timeout = -1\n")
    proc = run_cli("config", "show", "--config", str(f))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert str(f) in proc.stderr and "plugin_timeout" in proc.stderr


def test_cni_socket_beside_the_cri_socket_unless_set():
    from cri_net.server.server import cni_socket_path

    assert cni_socket_path(Settings()) == "/run/cri-net/cni.sock"
    assert cni_socket_path(Settings(listen="unix:///tmp/x/cri.sock")) == "/tmp/x/cni.sock"
    assert cni_socket_path(Settings(cni_listen="/tmp/y/handoff.sock")) == "/tmp/y/handoff.sock"
    assert cni_socket_path(Settings(cni_listen="unix:///tmp/y/h.sock")) == "/tmp/y/h.sock"
    assert cni_socket_path(Settings(cni_listen="")) is None
    assert from_args(show_args("--cni-listen", "")).cni_listen == ""


def test_a_toml_duration_of_inf_names_the_key_and_the_limit(tmp_path):
    """TOML spells infinity `inf`; `config show` printed it as `Infinity` (not JSON)."""
    f = tmp_path / "c.toml"
    f.write_text("plugin_timeout = inf\n")
    with pytest.raises(ConfigFileError) as info:
        build(str(f))
    assert str(f) in str(info.value) and "plugin_timeout" in str(info.value) and "86400" in str(info.value)


def test_durations_at_their_limits_are_taken():
    s = build(None, {"plugin_timeout": 86400, "conf_poll_interval": 0.05, "gc_interval": 0})
    assert (s.plugin_timeout, s.conf_poll_interval, s.gc_interval) == (86400, 0.05, 0)
