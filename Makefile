# Build for the dialer backend. Two variants share these rules:
#   release (default): -O2, binaries in bin/, used by `make run`
#   asan:              ASan+UBSan, binaries in build/asan/bin/, used by `make test`
# `make run` and `make test` go through scripts/ (they install, start servers, tear down).

VARIANT ?= release
CC ?= cc

PKGS := libevent libevent_pthreads hiredis libpq jansson libjwt libcurl libcrypto libcrypt libzip expat xlsxwriter
TEST_PKGS := cmocka

WARN := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes -Wformat=2 \
        -Wshadow -Wpointer-arith -Wvla -Wno-missing-field-initializers
CPPFLAGS_ALL := -Icommon -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) $(TEST_PKGS) 2>/dev/null)
LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

ifeq ($(VARIANT),asan)
  OUT := build/asan
  BIN := build/asan/bin
  OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
  OUT := build/release
  BIN := bin
  OPT := -O2 -g
endif

CFLAGS_ALL := -std=gnu11 $(WARN) $(OPT) $(CFLAGS)
LDFLAGS_ALL := $(OPT) $(LDFLAGS)

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(OUT)/%.o)
COMMON_LIB := $(OUT)/libcommon.a

API_OBJ := $(patsubst %.c,$(OUT)/%.o,$(wildcard api/*.c))
SCHED_OBJ := $(patsubst %.c,$(OUT)/%.o,$(wildcard scheduler/*.c))
CLI_OBJ := $(patsubst %.c,$(OUT)/%.o,$(wildcard cli/*.c))
EVENTS_OBJ := $(patsubst %.c,$(OUT)/%.o,$(wildcard events/*.c))
# libwebsockets only for dialer-events
EVENTS_LIBS := $(shell pkg-config --libs libwebsockets 2>/dev/null)
WORKERS := results stats import export bulk webhooks
WORKER_BINS := $(WORKERS:%=$(BIN)/dialer-%)

BINS := $(BIN)/dialer-api $(BIN)/dialer-scheduler $(BIN)/dialer-events $(BIN)/dialerctl $(WORKER_BINS)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(OUT)/tests/unit/%)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
INTEG_BINS := $(INTEG_SRC:tests/integration/%.c=$(OUT)/tests/integration/%)
HARNESS_OBJ := $(patsubst %.c,$(OUT)/%.o,$(filter-out $(INTEG_SRC),$(wildcard tests/integration/*.c)))

.PHONY: all tests asan run test clean format format-check fuzz events
# keep objects of test binaries (pattern-rule intermediates) for incremental builds
.SECONDARY:
all: $(BINS)

tests: $(UNIT_BINS) $(INTEG_BINS)

events: $(BIN)/dialer-events

asan:
	$(MAKE) VARIANT=asan all tests

run:
	@scripts/run.sh

test:
	@scripts/test.sh

$(OUT)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

# dialer-api replaces libevent's HTML error page with a JSON one, and hooks its request-line
# parser to give each route its body limit (api/http.c): the symbols must be in the dynamic
# table so libevent's PLT calls resolve to them.
$(BIN)/dialer-api: $(API_OBJ) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -Wl,--export-dynamic-symbol=evhttp_send_error \
	    -Wl,--export-dynamic-symbol=evhttp_parse_firstline_ -o $@ $^ $(LIBS)

$(BIN)/dialer-scheduler: $(SCHED_OBJ) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BIN)/dialer-events: $(EVENTS_OBJ) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS) $(EVENTS_LIBS)

$(BIN)/dialerctl: $(CLI_OBJ) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

define worker_rule
$(BIN)/dialer-$(1): $(patsubst %.c,$(OUT)/%.o,$(wildcard workers/$(1)/*.c)) $(COMMON_LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS_ALL) -o $$@ $$^ $$(LIBS)
endef
$(foreach w,$(WORKERS),$(eval $(call worker_rule,$(w))))

$(OUT)/tests/unit/%: $(OUT)/tests/unit/%.o $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS) $(shell pkg-config --libs $(TEST_PKGS))

$(OUT)/tests/integration/%: $(OUT)/tests/integration/%.o $(HARNESS_OBJ) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS) $(EVENTS_LIBS) $(shell pkg-config --libs $(TEST_PKGS))

# libFuzzer harnesses (clang): `make fuzz`, then e.g.
#   build/fuzz/fuzz_multipart -max_total_time=60 tests/fuzz/corpus_multipart
# (make test runs the same oracle as a deterministic loop: tests/unit/test_multipart.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
fuzz: $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

build/fuzz/fuzz_multipart: tests/fuzz/fuzz_multipart.c common/multipart.c common/util.c common/log.c
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS_ALL) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -o $@ $^ $(LIBS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
