# ugate — the two commands a new user needs are `make run` and `make test`.
# Both install what they need on a fresh Debian 12 + Node 20 machine.

ARGS ?=
BENCH_ARGS ?=
STAMP := node_modules/.ugate-installed

.PHONY: run test build deps bench bench-quick clean

run: build
	node dist/src/cli.js --config config/default.yaml $(ARGS)

test: build
	# The L2 cache tests start their own real redis-server (Debian package; needs root, as CI is).
	command -v redis-server || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server)
	npx vitest run

build: deps
	npx tsc -p tsconfig.json

deps: $(STAMP)

# npm install honours the lock file (npm ci rejects this lock under npm 11: it drops the
# optional msgpackr-extract packages of other platforms). Re-run only when they change.
$(STAMP): package.json package-lock.json
	npm install --no-audit --no-fund
	node -e "require('msgpackr').isNativeAccelerationEnabled || console.warn('note: msgpackr native extractor not loaded; telemetry encoding uses the JS path')"
	@touch $@

bench: build
	node native-bench/run.mjs $(BENCH_ARGS)

bench-quick: build
	node native-bench/run.mjs --quick $(BENCH_ARGS)

clean:
	rm -rf dist native-bench/build
