# The two commands of the README. Both set up what they need first (idempotent).
.PHONY: run demo test bootstrap protos docs performance reliability install uninstall

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@scripts/run.sh $(ARGS)

demo: bootstrap
	@scripts/demo.sh

# pytest arguments: make test ARGS="tests/unit -k config -x"
test: bootstrap
	@scripts/test.sh $(ARGS)

# cri-net and cri-net-cni on PATH, cri-net.service and /etc/cri-net/config.toml (idempotent).
# Overrides: DESTDIR, BINDIR (/usr/local/bin), UNITDIR (/etc/systemd/system), CONFDIR (/etc/cri-net)
install: bootstrap
	@scripts/install.sh install

uninstall:
	@scripts/install.sh uninstall

protos: bootstrap
	@.venv/bin/python scripts/gen_protos.py

# docs/PERFORMANCE.md and docs/RELIABILITY.md, regenerated from fresh runs (root, ~30 min).
docs: performance reliability

performance: bootstrap
	@.venv/bin/python benchmarks/run_all.py

reliability: bootstrap
	@.venv/bin/python scripts/reliability_report.py
