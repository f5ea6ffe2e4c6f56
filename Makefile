# One-command entry points. `make demo` and `make test` install what they need first
# (scripts/setup-host.sh is idempotent and quick on a second run).
SHELL := /bin/bash
ROOT := $(abspath .)
VENV ?= $(ROOT)/.venv
BIN := $(VENV)/bin
# Ansible finds this checkout as the collection virtops.libvirt through a symlink farm.
COLLECTIONS := $(ROOT)/build/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_ROLES_PATH := $(ROOT)/roles
export ANSIBLE_LOCALHOST_WARNING := false
export ANSIBLE_INVENTORY_UNPARSED_WARNING := false
export ANSIBLE_PYTHON_INTERPRETER := $(BIN)/python
export ANSIBLE_NOCOLOR := 1
export PATH := $(BIN):$(PATH)
export PYTHONPATH := $(COLLECTIONS)
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider

.PHONY: bench setup demo docs test matrix sanity lint unit integration functional molecule faults link clean

setup:
	@bash scripts/setup-host.sh

link:
	@mkdir -p $(COLLECTIONS)/ansible_collections/virtops
	@ln -sfn $(ROOT) $(COLLECTIONS)/ansible_collections/virtops/libvirt

demo: setup link
	$(BIN)/ansible-playbook playbooks/demo.yml

# Reference documentation of every module, plugin and role as reStructuredText in build/docs
# (antsibull-docs, the tool that renders docs.ansible.com), from the same DOCUMENTATION blocks
# that ansible-doc shows.
docs: setup link
	@rm -rf $(ROOT)/build/docs && mkdir -p $(ROOT)/build/docs
	$(BIN)/antsibull-docs collection --use-current --squash-hierarchy --dest-dir $(ROOT)/build/docs virtops.libvirt
	@echo "reference documentation: build/docs/index.rst"

test: setup link
	@bash tests/run-all.sh

# Sanity and unit tests on every ansible-core line that requires_ansible admits
# (tests/ansible-core-lines.txt), each in its own venv; `make test` covers the oldest and newest.
matrix: link
	@VIRTOPS_ANSIBLE_LINES=all bash scripts/setup-host.sh
	@bash tests/matrix.sh

sanity: setup
	@bash tests/sanity.sh

# ansible-lint over playbooks/ and roles/ (configuration: .ansible-lint; offline), the docs of
# every plugin (antsibull-docs), then the
# changelog fragments. git does not keep empty directories: lint the ones that exist.
LINT_PATHS = $(wildcard playbooks roles)
lint: setup link
	@cd $(ROOT) && if [ -n "$(strip $(LINT_PATHS))" ]; then \
	  NO_COLOR=1 $(BIN)/ansible-lint --offline --profile production $(LINT_PATHS); \
	else echo "ansible-lint: no playbooks/ or roles/ yet, nothing to lint"; fi
	@# documentation markup of every module and plugin (O(), RV(), seealso targets, ...)
	@cd $(COLLECTIONS)/ansible_collections/virtops/libvirt && \
	  $(BIN)/antsibull-docs lint-collection-docs --plugin-docs --skip-rstcheck . && \
	  echo "antsibull-docs lint: ok"
	@cd $(ROOT) && $(BIN)/antsibull-changelog lint && \
	  $(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml && \
	  echo "antsibull-changelog lint: ok"

unit: setup link
	$(PYTEST) tests/unit

integration: setup link
	@bash tests/integration/run.sh

functional: setup link
	$(PYTEST) tests/functional

molecule: setup link
	@bash tests/molecule.sh

# Fault-injection suite of the backup engine (also the last stage of `make test`; restarts libvirtd).
faults: setup link
	$(PYTEST) tests/faults

# Backup benchmark against nbdcopy and virtnbdbackup (not part of make test: minutes, and the
# machine should be otherwise idle). BENCH_ARGS=--quick for a smoke run.
bench: setup link
	$(BIN)/python bench/backup_bench.py $(BENCH_ARGS)

clean:
	rm -rf build tests/output
