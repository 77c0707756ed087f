# The two commands of the README. Both set up what they need first (idempotent).
.PHONY: run demo test bootstrap protos

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
