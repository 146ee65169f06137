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
#   make down                          remove the stacks, then the networks
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
# BASE_IMAGE=shop/python-base:bookworm to `make build`.
# Builds that must not reach a package index: `make wheels` first (see scripts/wheelhouse.sh).
#
# A swarm of several machines: every node pulls the images from a registry. `make build`,
# `make push REGISTRY=host:port`, then add REGISTRY=host:port to deploy, update and scale:
# the images are then REGISTRY/SHOP_NAMESPACE/<service>-service and REGISTRY/EDGE_IMAGE.
#
# Variables (environment or command line): DOCKER, SHOP_NAMESPACE, BASE_IMAGE, IMG_TAG,
# RELEASES, REGISTRY, REPLICAS, SERVICE, NO_IPVS, EDGE_PORT, EDGE_IMAGE.

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
VERSION        ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

ifneq ($(REGISTRY),)
# Images from a registry: swarm asks it for each image's digest and pins the service to it,
# so every node runs the same bytes, and a tag pushed again later cannot change what a
# rollback goes back to. A registry that needs a login: `docker login` here, and the nodes
# get the credentials with the service (--with-registry-auth).
IMAGE_NAMESPACE := $(REGISTRY)/$(SHOP_NAMESPACE)
STACK_EDGE_IMAGE := $(REGISTRY)/$(EDGE_IMAGE)
DEPLOY = $(DOCKER) stack deploy --resolve-image always --with-registry-auth
else
# Locally built images have no registry digest to pin: don't ask a registry for one.
IMAGE_NAMESPACE := $(SHOP_NAMESPACE)
STACK_EDGE_IMAGE := $(EDGE_IMAGE)
DEPLOY = $(DOCKER) stack deploy --resolve-image never
endif

# Spelled out on each deploy line, so that the printed command is the whole command.
STACK_ENV = SHOP_NAMESPACE=$(IMAGE_NAMESPACE) IMG_TAG=$(IMG_TAG) REPLICAS=$(REPLICAS)

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

BUILD = $(DOCKER) build -f docker/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION)

.PHONY: help base-images wheels networks build push deploy deploy-edge status scale update \
	rollback down cluster-up cluster-deploy cluster-status cluster-down test-cluster

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
	$(BUILD) --target $(svc)-service --build-arg RELEASE=$(rel) \
		-t $(SHOP_NAMESPACE)/$(svc)-service:$(rel) .$(newline)))
	$(if $(filter 2,$(RELEASES)),$(foreach svc,$(SERVICES),\
	$(DOCKER) tag $(SHOP_NAMESPACE)/$(svc)-service:2 $(SHOP_NAMESPACE)/$(svc)-service:latest$(newline)))

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
	$(STACK_ENV) $(DEPLOY) $(STACK_FILES_prod) prod
	$(STACK_ENV) $(DEPLOY) $(STACK_FILES_coupon) coupon
	$(STACK_ENV) $(DEPLOY) $(STACK_FILES_front) front
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
	$(STACK_ENV) $(DEPLOY) $(STACK_FILES_front) front

update: IMG_TAG = 2
update:
	$(STACK_ENV) $(DEPLOY) $(STACK_FILES_$(SERVICE)) $(SERVICE)

rollback:
	$(DOCKER) service rollback $(SERVICE)_app

down:
	-$(DOCKER) stack rm edge front coupon prod
	@echo "waiting for the stacks' tasks to stop before removing the networks"
	@for i in $$(seq 60); do \
		[ -z "$$($(DOCKER) network inspect -f '{{range .Containers}}x{{end}}' backend frontend 2>/dev/null | tr -d '\n[]')" ] && break; \
		sleep 1; done
	-$(DOCKER) network rm backend frontend

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

define newline


endef
