# MCP Hub: the seed's targets, plus test and bench.
PYTHON ?= python
COMPOSE_DEV = docker compose -f docker-compose.dev.yml

.PHONY: help up-dev up-dev-with-db logs-dev down-dev rebuild-dev test bench check

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

up-dev:  ## start the development container (source mounted)
	$(COMPOSE_DEV) up -d

up-dev-with-db:  ## MCP Hub uses no database: the same as up-dev (see docs/operations.md)
	@echo "MCP Hub uses no database; starting without one."
	$(COMPOSE_DEV) up -d

logs-dev:  ## follow the development container's logs
	$(COMPOSE_DEV) logs -f

down-dev:  ## stop the development container
	$(COMPOSE_DEV) down

rebuild-dev:  ## rebuild the development image from scratch and start it
	$(COMPOSE_DEV) build --no-cache
	$(COMPOSE_DEV) up -d

check:  ## validate the configuration
	$(PYTHON) -m hub check

test:  ## the README's test command
	bash tests/setup.sh && pytest

bench:  ## every benchmark (not part of the tests); figures to bench/RESULTS.md
	$(PYTHON) -m bench
