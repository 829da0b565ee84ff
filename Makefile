# Every target calls a script in scripts/; see each script for details.
.PHONY: build test unit integration e2e bench lint fuzz demo demo-down clean

build:
	scripts/build.sh

test:
	scripts/test.sh

unit:
	scripts/test.sh unit

integration:
	scripts/test.sh integration

e2e:
	scripts/e2e.sh

bench:
	scripts/bench/all.sh

lint:
	scripts/lint.sh

fuzz:
	scripts/fuzz.sh

demo:
	scripts/demo.sh

demo-down:
	scripts/demo.sh down

clean:
	rm -rf bin
