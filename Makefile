# duet: PostgreSQL extension (pg_ext/), SQLite extension (sqlite_ext/) and
# client library (client/).  Missing Debian packages are installed by
# tests/deps.sh when a target needs them.
#
#   make            build all three parts
#   make check      build, install the PostgreSQL extension, run every suite
#                   against a throwaway cluster and SQLite
#   make demo       the README quickstart on SQLite (DUET_PG_URL=... for PostgreSQL)
#   make bench      benchmarks, printed as ratios against a baseline
#   make fuzz       libFuzzer targets, FUZZ_SECONDS each (default 60)
#   make install    client parts and the SQLite extension (PREFIX/lib/duet/duet.so)
#                   under PREFIX and DESTDIR, the PostgreSQL extension through PGXS

PREFIX ?= /usr/local
FUZZ_SECONDS ?= 60

all: pg sqlite client

deps:
	@tests/deps.sh build

pg: deps
	$(MAKE) -C pg_ext

sqlite: deps
	$(MAKE) -C sqlite_ext

client: deps
	$(MAKE) -C client

client-asan: deps
	$(MAKE) -C client BUILD=build-asan SAN=1

pg-install: pg
	$(MAKE) -C pg_ext install

check: all client-asan
	@tests/deps.sh check
	$(MAKE) pg-install
	$(MAKE) -C tests
	$(MAKE) -C tests BUILD=build-asan SAN=1
	tests/run-suites.sh

demo: sqlite client
	tests/demo.sh

bench: all pg-install
	@tests/deps.sh bench
	tests/bench/run.sh

fuzz: client
	@tests/deps.sh fuzz
	$(MAKE) -C tests/fuzz run FUZZ_SECONDS=$(FUZZ_SECONDS)

install: all
	$(MAKE) -C client install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	install -d $(DESTDIR)$(PREFIX)/lib/duet
	install -m 755 sqlite_ext/duet.so $(DESTDIR)$(PREFIX)/lib/duet/duet.so
	$(MAKE) -C pg_ext install DESTDIR=$(DESTDIR)

clean:
	$(MAKE) -C pg_ext clean
	$(MAKE) -C sqlite_ext clean
	$(MAKE) -C client clean
	$(MAKE) -C tests clean
	rm -rf tests/out

.PHONY: all deps pg sqlite client client-asan pg-install check demo bench fuzz install clean
