# The shop's Docker Swarm tutorial as make targets. Make prints each command before it
# runs it, so every step shows the plain docker command behind it.
#
#   make networks                      overlay networks backend + frontend
#   make build                         images :1 and :2 of the three services
#   make push REGISTRY=host:port       tag and push them (and the edge image) to a registry
#   make deploy                        the three stacks at IMG_TAG=1 (REGISTRY=host:port:
#                                      from that registry, image digests pinned)
#   make status                        stacks, services, the front's tasks
#   make scale REPLICAS=4              front to 4 replicas (make scale REPLICAS=2: back)
#   make update                        rolling update of the front to IMG_TAG=2
#   make update SERVICE=prod           ... of prod (coupon likewise)
#   make rollback                      back to the previous spec of the front (SERVICE=...)
#   make autoscale                     Prometheus and the autoscaler (stacks/autoscale.yml)
#   make load RATE=200 SECONDS=30      bounded load on the entry point, live progress line
#   make console                       the live console (stacks/console.yml) on CONSOLE_PORT;
#                                      waits until it answers and prints its URL
#   make push-console REGISTRY=...     the console's image to a registry (a swarm of several
#                                      machines: then make console REGISTRY=...)
#   make console-screenshot            the README's picture of the console during an update
#   make down                          remove the stacks, then the networks
#
#   make shop-deploy                   the whole shop as one stack `shop` (stacks/shop.yml),
#                                      each service at its *_TAG and *_REPLICAS (default
#                                      IMG_TAG, REPLICAS); NO_IPVS=1: stacks/shop.no-ipvs.yml,
#                                      the edge inside the stack
#   make shop-update SERVICE=front     that service to IMG_TAG=2; the others keep what they run
#   make shop-status / shop-down       the stack's services and tasks / remove it, networks and all
#   make stacks                        write the stack files from stacks/definition.yml
#
#   make cluster-up                    a three-node swarm on this machine (scripts/cluster.sh),
#                                      with an image registry on its manager
#   make cluster-deploy                push to that registry, deploy the stacks from it
#                                      (IMG_TAG), edge on 127.0.0.1:18081-18083
#   make cluster-status / cluster-down
#   make test-cluster                  the node-loss test (pytest -m cluster)
#
# Hosts without IPVS (some VMs, LXC, WSL): add NO_IPVS=1 to every step; the stacks get
# dnsrr endpoints and the edge proxy (stacks/edge.yml) is the entry point on EDGE_PORT.
# Hosts that cannot pull images: `make base-images` once, then add
# BASE_IMAGE=shop/python-base:bookworm to `make build` (and
# PROMETHEUS_IMAGE=shop/prometheus:bookworm to `make autoscale`).
# Builds that must not reach a package index: `make wheels` first (see scripts/wheelhouse.sh).
#
# A swarm of several machines: every node pulls the images from a registry. `make build`,
# `make push REGISTRY=host:port`, then add REGISTRY=host:port to deploy, update and scale:
# the images are then REGISTRY/SHOP_NAMESPACE/<service>-service and REGISTRY/EDGE_IMAGE.
#
# Variables (environment or command line): DOCKER, SHOP_NAMESPACE, BASE_IMAGE, IMG_TAG,
# RELEASES, REGISTRY, REPLICAS, SERVICE, NO_IPVS, EDGE_PORT, EDGE_IMAGE; for autoscaling
# AUTOSCALE_MIN, AUTOSCALE_MAX, AUTOSCALE_TARGET_RPS (the front's labels), AUTOSCALE_INTERVAL_S,
# AUTOSCALE_DOWN_STABILIZATION_S, AUTOSCALE_RATE_WINDOW_S, PROMETHEUS_IMAGE, PROMETHEUS_PORT,
# AUTOSCALER_IMAGE, DOCKER_GID; for the load RATE, SECONDS; for the one stack SHOP_STACK,
# PROD_TAG, COUPON_TAG, FRONT_TAG, PROD_REPLICAS, COUPON_REPLICAS, FRONT_REPLICAS; for the
# console CONSOLE_PORT, CONSOLE_IMAGE, CONSOLE_PROBE_RATE, CONSOLE_PROBE_URL.
#
# While the autoscaler runs, deploy/update/scale keep an autoscaled service's current replica
# count when it is above REPLICAS (scripts/autoscaled-replicas.sh): they never lower it.

DOCKER         ?= docker
SHOP_NAMESPACE ?= shop
BASE_IMAGE     ?= python:3.12-slim
IMG_TAG        ?= 1
RELEASES       ?= 1 2
REGISTRY       ?=
REPLICAS       ?= 2
SERVICE        ?= front
NO_IPVS        ?= 0
EDGE_PORT      ?= 80
EDGE_IMAGE     ?= shop/edge-haproxy:bookworm
REVISION       ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
AUTOSCALE_MIN        ?= 2
AUTOSCALE_MAX        ?= 6
AUTOSCALE_TARGET_RPS ?= 250
AUTOSCALE_INTERVAL_S ?= 5
AUTOSCALE_DOWN_STABILIZATION_S ?= 60
AUTOSCALE_RATE_WINDOW_S ?= 20
PROMETHEUS_IMAGE ?= prom/prometheus:v2.53.5
PROMETHEUS_PORT  ?= 9090
AUTOSCALER_IMAGE ?= $(SHOP_NAMESPACE)/autoscaler:latest
# The autoscaler and the console's Docker proxy run with the group of the engine's socket (0
# if it cannot be read): this machine's, or the one DOCKER_HOST names (the lab's manager).
ENGINE_SOCKET    := $(patsubst unix://%,%,$(or $(filter unix://%,$(DOCKER_HOST)),unix:///var/run/docker.sock))
DOCKER_GID       ?= $(shell stat -c %g $(ENGINE_SOCKET) 2>/dev/null || echo 0)
PYTHON           ?= .venv/bin/python
CONSOLE_PORT       ?= 8090
CONSOLE_IMAGE      ?= $(SHOP_NAMESPACE)/console:latest
CONSOLE_PROBE_RATE ?= 5
ifeq ($(NO_IPVS),1)
CONSOLE_PROBE_URL  ?= http://tasks.edge_proxy:8080/product-detail/2
else
CONSOLE_PROBE_URL  ?= http://front_app:8080/product-detail/2
endif
RATE             ?= 200
SECONDS          ?= 30
VERSION        ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
SHOP_STACK     ?= shop
PROD_TAG       ?= $(IMG_TAG)
COUPON_TAG     ?= $(IMG_TAG)
FRONT_TAG      ?= $(IMG_TAG)
PROD_REPLICAS   ?= $(REPLICAS)
COUPON_REPLICAS ?= $(REPLICAS)
FRONT_REPLICAS  ?= $(REPLICAS)

ifneq ($(REGISTRY),)
# Images from a registry: swarm asks it for each image's digest and pins the service to it,
# so every node runs the same bytes, and a tag pushed again later cannot change what a
# rollback goes back to. A registry that needs a login: `docker login` here, and the nodes
# get the credentials with the service (--with-registry-auth).
IMAGE_NAMESPACE := $(REGISTRY)/$(SHOP_NAMESPACE)
STACK_EDGE_IMAGE := $(REGISTRY)/$(EDGE_IMAGE)
STACK_CONSOLE_IMAGE := $(REGISTRY)/$(CONSOLE_IMAGE)
DEPLOY = $(DOCKER) stack deploy --resolve-image always --with-registry-auth
else
# Locally built images have no registry digest to pin: don't ask a registry for one.
IMAGE_NAMESPACE := $(SHOP_NAMESPACE)
STACK_EDGE_IMAGE := $(EDGE_IMAGE)
STACK_CONSOLE_IMAGE := $(CONSOLE_IMAGE)
DEPLOY = $(DOCKER) stack deploy --resolve-image never
endif

# Spelled out on each deploy line, so that the printed command is the whole command.
# $(call STACK_ENV,STACK): REPLICAS as scripts/autoscaled-replicas.sh says for STACK_app.
STACK_ENV = SHOP_NAMESPACE=$(IMAGE_NAMESPACE) IMG_TAG=$(IMG_TAG) \
	REPLICAS=$(shell DOCKER=$(DOCKER) scripts/autoscaled-replicas.sh $(1)_app $(REPLICAS)) \
	AUTOSCALE_MIN=$(AUTOSCALE_MIN) AUTOSCALE_MAX=$(AUTOSCALE_MAX) \
	AUTOSCALE_TARGET_RPS=$(AUTOSCALE_TARGET_RPS)

SERVICES := prod coupon front

ifeq ($(NO_IPVS),1)
STACK_FILES_prod   := -c stacks/prod.yml -c stacks/no-ipvs.yml
STACK_FILES_coupon := -c stacks/coupon.yml -c stacks/no-ipvs.yml
STACK_FILES_front  := -c stacks/front.no-ipvs.yml
else
STACK_FILES_prod   := -c stacks/prod.yml
STACK_FILES_coupon := -c stacks/coupon.yml
STACK_FILES_front  := -c stacks/front.yml
endif

# What each release is, beyond its label: release 1 is the classic front, without couponPrice.
RELEASE_ARGS_1 := --build-arg COUPON_PRICE=false

BUILD = $(DOCKER) build -f docker/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION)

.PHONY: help base-images wheels networks build push deploy deploy-edge status scale update \
	rollback down cluster-up cluster-deploy cluster-status cluster-down test-cluster \
	autoscale load stacks shop-deploy shop-update shop-status shop-down console push-console \
	console-screenshot

help:
	@sed -n '1,/^$$/p' Makefile

base-images:
	DOCKER=$(DOCKER) docker/build-base-image.sh all

wheels:
	scripts/wheelhouse.sh

networks:
	DOCKER=$(DOCKER) scripts/create-networks.sh backend frontend

# Release 1 and release 2 of every service from this one tree; :latest is release 2.
build:
	$(foreach svc,$(SERVICES),$(foreach rel,$(RELEASES),\
	$(BUILD) --target $(svc)-service --build-arg RELEASE=$(rel) $(RELEASE_ARGS_$(rel)) \
		-t $(SHOP_NAMESPACE)/$(svc)-service:$(rel) .$(newline)))
	$(if $(filter 2,$(RELEASES)),$(foreach svc,$(SERVICES),\
	$(DOCKER) tag $(SHOP_NAMESPACE)/$(svc)-service:2 $(SHOP_NAMESPACE)/$(svc)-service:latest$(newline)))
	$(BUILD) --target autoscaler -t $(AUTOSCALER_IMAGE) .
	$(BUILD) --target console -t $(CONSOLE_IMAGE) .

# The releases of every service and the edge image, under the registry's name.
push:
ifeq ($(REGISTRY),)
	$(error make push needs REGISTRY=host:port)
endif
	$(foreach svc,$(SERVICES),$(foreach rel,$(RELEASES),\
	$(DOCKER) tag $(SHOP_NAMESPACE)/$(svc)-service:$(rel) $(IMAGE_NAMESPACE)/$(svc)-service:$(rel)$(newline)\
	$(DOCKER) push -q $(IMAGE_NAMESPACE)/$(svc)-service:$(rel)$(newline)))
	$(DOCKER) tag $(EDGE_IMAGE) $(STACK_EDGE_IMAGE)
	$(DOCKER) push -q $(STACK_EDGE_IMAGE)

deploy: networks
	$(call STACK_ENV,prod) $(DEPLOY) $(STACK_FILES_prod) prod
	$(call STACK_ENV,coupon) $(DEPLOY) $(STACK_FILES_coupon) coupon
	$(call STACK_ENV,front) $(DEPLOY) $(STACK_FILES_front) front
ifeq ($(NO_IPVS),1)
	$(MAKE) --no-print-directory deploy-edge
endif

deploy-edge:
	EDGE_PORT=$(EDGE_PORT) EDGE_IMAGE=$(STACK_EDGE_IMAGE) $(DEPLOY) -c stacks/edge.yml edge

status:
	$(DOCKER) stack ls
	$(foreach s,$(SERVICES),$(DOCKER) stack services $(s)$(newline))
	$(DOCKER) service ps --filter desired-state=running front_app

# The stack file is the source of truth: scaling redeploys it with REPLICAS, at IMG_TAG
# (pass the tag the service runs, or the scale becomes an update too).
scale:
	$(call STACK_ENV,front) $(DEPLOY) $(STACK_FILES_front) front

update: IMG_TAG = 2
update:
	$(call STACK_ENV,$(SERVICE)) $(DEPLOY) $(STACK_FILES_$(SERVICE)) $(SERVICE)

rollback:
	$(DOCKER) service rollback $(SERVICE)_app

down:
	-$(DOCKER) stack rm autoscale console edge front coupon prod
	@echo "waiting for the stacks' tasks to stop before removing the networks"
	@for i in $$(seq 60); do \
		[ -z "$$($(DOCKER) network inspect -f '{{range .Containers}}x{{end}}' backend frontend 2>/dev/null | tr -d '\n[]')" ] && break; \
		sleep 1; done
	-$(DOCKER) network rm backend frontend
# Prometheus' tmpfs volume outlives its stack: it goes too.
	$(DOCKER) volume rm autoscale_prometheus-data 2>/dev/null || true

# Prometheus and the autoscaler, next to the stacks of `make deploy` (with or without NO_IPVS:
# both services run one task with dnsrr, the UI is published in host mode).
# The autoscaler reaches the engine through its filtering proxy (stacks/docker-api.yml).
autoscale: networks
	DOCKER_API_CONSUMER=autoscaler DOCKER_API_CONFIG_VERSION=$(call DOCKER_API_DIGEST,autoscaler) \
		DOCKER_GID=$(DOCKER_GID) EDGE_IMAGE=$(STACK_EDGE_IMAGE) PROMETHEUS_IMAGE=$(PROMETHEUS_IMAGE) \
		PROMETHEUS_PORT=$(PROMETHEUS_PORT) AUTOSCALER_IMAGE=$(AUTOSCALER_IMAGE) \
		AUTOSCALE_INTERVAL_S=$(AUTOSCALE_INTERVAL_S) \
		AUTOSCALE_DOWN_STABILIZATION_S=$(AUTOSCALE_DOWN_STABILIZATION_S) \
		AUTOSCALE_RATE_WINDOW_S=$(AUTOSCALE_RATE_WINDOW_S) \
		$(DEPLOY) -c stacks/autoscale.yml -c stacks/docker-api.yml autoscale

# RATE requests/s for SECONDS seconds (at most 600) on the shop's entry point on this machine,
# with one live progress line: sent, failed, p99, the front's replicas.
load:
	$(PYTHON) -m shop_tools.load --rate $(RATE) --duration $(SECONDS) \
		--url http://127.0.0.1:$(EDGE_PORT)/product-detail/2 --service front_app \
		--docker $(DOCKER)

# The whole shop as one stack: one deploy, one `docker stack rm`, its own networks. The
# per-service targets above are the tutorial's walk; use one path or the other, not both.
SHOP_FILE := $(if $(filter 1,$(NO_IPVS)),stacks/shop.no-ipvs.yml,stacks/shop.yml)
SHOP_ENV = SHOP_NAMESPACE=$(IMAGE_NAMESPACE) \
	PROD_TAG=$(PROD_TAG) COUPON_TAG=$(COUPON_TAG) FRONT_TAG=$(FRONT_TAG) \
	PROD_REPLICAS=$(PROD_REPLICAS) COUPON_REPLICAS=$(COUPON_REPLICAS) \
	FRONT_REPLICAS=$(FRONT_REPLICAS) AUTOSCALE_MIN=$(AUTOSCALE_MIN) \
	AUTOSCALE_MAX=$(AUTOSCALE_MAX) AUTOSCALE_TARGET_RPS=$(AUTOSCALE_TARGET_RPS) \
	$(if $(filter 1,$(NO_IPVS)),EDGE_PORT=$(EDGE_PORT) EDGE_IMAGE=$(STACK_EDGE_IMAGE))
# $(call RUNNING,SERVICE,tag|replicas,DEFAULT): what SERVICE of the stack runs now.
RUNNING = $(shell DOCKER=$(DOCKER) scripts/running.sh $(SHOP_STACK)_$(1) $(2) $(3))
# $(call UPDATED_TAG,SERVICE): IMG_TAG for the service being updated, else the tag it runs.
UPDATED_TAG = $(if $(filter $(1),$(SERVICE)),$(IMG_TAG),$(call RUNNING,$(1),tag,$(IMG_TAG)))
SHOP_LABEL = label=com.docker.stack.namespace=$(SHOP_STACK)

shop-deploy:
	$(strip $(SHOP_ENV)) $(DEPLOY) -c $(SHOP_FILE) $(SHOP_STACK)

# `docker stack deploy` applies the whole file: SERVICE gets IMG_TAG, every other service the
# tag it runs, and each keeps its replica count, so only SERVICE's tasks are replaced.
shop-update: IMG_TAG = 2
shop-update: PROD_TAG = $(call UPDATED_TAG,prod)
shop-update: COUPON_TAG = $(call UPDATED_TAG,coupon)
shop-update: FRONT_TAG = $(call UPDATED_TAG,front)
shop-update: PROD_REPLICAS = $(call RUNNING,prod,replicas,$(REPLICAS))
shop-update: COUPON_REPLICAS = $(call RUNNING,coupon,replicas,$(REPLICAS))
shop-update: FRONT_REPLICAS = $(call RUNNING,front,replicas,$(REPLICAS))
shop-update:
	$(if $(filter $(SERVICE),$(SERVICES)),,$(error SERVICE must be one of $(SERVICES)))
	$(strip $(SHOP_ENV)) $(DEPLOY) -c $(SHOP_FILE) $(SHOP_STACK)

shop-status:
	$(DOCKER) stack services $(SHOP_STACK)
	$(DOCKER) stack ps --filter desired-state=running $(SHOP_STACK)

# `docker stack rm` returns at once; its tasks drain (up to stop_grace_period) before the
# stack's networks can go.
shop-down:
	$(DOCKER) stack rm $(SHOP_STACK)
	@echo "waiting for the stack's containers and networks to go"
	@for i in $$(seq 60); do \
		[ -z "$$($(DOCKER) ps -aq --filter $(SHOP_LABEL); \
			$(DOCKER) network ls -q --filter $(SHOP_LABEL))" ] && break; \
		sleep 1; done

# The stack files of the shop's services, the edge and the one stack, from one definition.
stacks:
	$(PYTHON) scripts/render_stacks.py

# The console (stacks/console.yml) on a manager, port CONSOLE_PORT in host mode; it reads the
# swarm through its own Docker proxy (GET only) and probes the shop's entry point.
# With REGISTRY, the image comes from there: `make push-console REGISTRY=...` first, from
# the engine that built it.
console: networks
	CONSOLE_IMAGE=$(STACK_CONSOLE_IMAGE) CONSOLE_PROXY_IMAGE=$(STACK_EDGE_IMAGE) \
		CONSOLE_PORT=$(CONSOLE_PORT) CONSOLE_PROBE_URL=$(CONSOLE_PROBE_URL) \
		CONSOLE_PROBE_RATE=$(CONSOLE_PROBE_RATE) DOCKER_GID=$(DOCKER_GID) \
		$(DEPLOY) -c stacks/console.yml console
	@DOCKER=$(DOCKER) scripts/console-url.sh $(CONSOLE_PORT)

push-console:
ifeq ($(REGISTRY),)
	$(error make push-console needs REGISTRY=host:port)
endif
	$(DOCKER) tag $(CONSOLE_IMAGE) $(STACK_CONSOLE_IMAGE)
	$(DOCKER) push -q $(STACK_CONSOLE_IMAGE)

# The README's screenshot (docs/console.png), taken by the console's swarm test during its
# rolling update of the front (it deploys and removes a shop of its own: hold no other stack).
console-screenshot:
	$(PYTHON) -m pytest tests/deploy/test_console.py -m swarm -p no:cacheprovider \
		--console-screenshot docs/console.png

cluster-up:
	scripts/cluster.sh up

cluster-deploy:
	scripts/cluster.sh deploy $(IMG_TAG)

cluster-status:
	scripts/cluster.sh status

cluster-down:
	scripts/cluster.sh down

test-cluster:
	.venv/bin/python -m pytest -m cluster -p no:cacheprovider

# $(call DOCKER_API_DIGEST,CONSUMER): names the proxy's configs after their content, so a
# changed allow-list or haproxy.cfg is a new swarm config (configs cannot change in place).
DOCKER_API_DIGEST = $(shell cat stacks/docker-api/haproxy.cfg stacks/docker-api/$(1).lst \
	| sha256sum | cut -c1-12)

define newline


endef
