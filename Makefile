# Two commands do everything on a fresh machine (each installs what is missing first):
#   make smoke   runs `posttrain run --preset smoke`
#   make test    runs every test (vitest + pytest)
.PHONY: setup smoke test bench clean

setup:
	@scripts/setup.sh

smoke: setup
	@node bin/posttrain.js run --preset smoke

test:
	@scripts/test.sh

clean:
	rm -rf dist .stamps

bench:
	@bench/run-bridge.sh
