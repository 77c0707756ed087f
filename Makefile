# The two commands of the README. Both set up what they need first (idempotent).
.PHONY: run test bootstrap protos

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@scripts/demo.sh

test: bootstrap
	@scripts/test.sh

protos: bootstrap
	@.venv/bin/python scripts/gen_protos.py
