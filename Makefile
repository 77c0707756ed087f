# The two commands of the README. Both set up what they need first (idempotent).
.PHONY: run demo test bootstrap protos docs performance reliability

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@scripts/run.sh $(ARGS)

demo: bootstrap
	@scripts/demo.sh

test: bootstrap
	@scripts/test.sh

protos: bootstrap
	@.venv/bin/python scripts/gen_protos.py

# docs/PERFORMANCE.md and docs/RELIABILITY.md, regenerated from fresh runs (root, ~30 min).
docs: performance reliability

performance: bootstrap
	@.venv/bin/python benchmarks/run_all.py

reliability: bootstrap
	@.venv/bin/python scripts/reliability_report.py
