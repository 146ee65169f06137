# The shop's Docker Swarm tutorial as make targets. Make prints each command before it
# runs it, so every step shows the plain docker command behind it; the steps that change the
# swarm then wait until it has converged (shop_tools/swarm.py: one line per change, then one
# line saying what runs now, on which release, at which URL).
#
#   make configure                     detect this host's settings once, into host.mk (below)
#   make build                         images :1 and :2 (:latest is 2) of the three services
#                                      and the autoscaler; first the Debian-made bases and the
#                                      wheelhouse where host.mk says so
#   make push REGISTRY=host:port       tag and push them (and the edge image) to a registry
#   make deploy                        the three stacks (and the edge where there is no IPVS)
#                                      (REGISTRY=host:port: from that registry, digests pinned)
#   make update                        rolling update of the front to IMG_TAG (latest)
#   make update SERVICE=prod           ... of prod (coupon likewise)
#   make rollback                      the front back to its previous spec (SERVICE=...)
#   make scale REPLICAS=4              the front to 4 replicas (SERVICE=... for another)
#   make status                        release, replicas, update state, entry point, autoscaler
#   make autoscale                     Prometheus and the autoscaler (stacks/autoscale.yml)
#   make load RATE=200 SECONDS=30      bounded load on the entry point, live progress line
#                                      (LOAD_JSON=FILE: its report as JSON)
#   make console                       the live console (stacks/console.yml) on CONSOLE_PORT;
#                                      waits until it answers and prints its URL
#   make push-console REGISTRY=...     the console's image to a registry (a swarm of several
#                                      machines: then make console REGISTRY=...)
#   make console-screenshot            the README's picture of the console during an update
#   make down                          remove the stacks, then the networks
#   make clean                         remove the shop's images and failed builds' leftovers
#
#   make shop-deploy                   the whole shop as one stack `shop` (stacks/shop.yml),
#                                      each service at its *_TAG and *_REPLICAS (default
#                                      IMG_TAG, REPLICAS); NO_IPVS=1: stacks/shop.no-ipvs.yml,
#                                      the edge inside the stack
#   make shop-update SERVICE=front     that service to IMG_TAG (default latest, release 2); the
#                                      others keep what they run
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
# Settings of the host live in host.mk (HOST_CONFIG), written by `make configure`, which
# detects them and says why: DOCKER (a client that builds with BuildKit) and DOCKER_BUILDKIT,
# NO_IPVS (auto: without IPVS the stacks get dnsrr endpoints and the edge proxy,
# stacks/edge.yml, is the entry point on EDGE_PORT), BASE_IMAGE and PROMETHEUS_IMAGE (the
# Debian-made ones where images cannot be pulled) with WHEELS_PYTHON (the Python that makes
# the wheelhouse for such builds), SHOP_NAMESPACE. The steps that need them run `make
# configure` first when host.mk is missing. NAME=value on the command line overrides host.mk.
#
# A step changes only what it is told: a deploy without IMG_TAG keeps the tag each service
# runs (before its first deploy, the stacks' default, latest), without REPLICAS its replica
# count (first deploy: 2). While the autoscaler runs, deploy/update/scale never lower an
# autoscaled service's count (scripts/autoscaled-replicas.sh).
#
# A swarm of several machines: every node pulls the images from a registry. `make build`,
# `make push REGISTRY=host:port`, then add REGISTRY=host:port to deploy, update and scale:
# the images are then REGISTRY/SHOP_NAMESPACE/<service>-service and REGISTRY/EDGE_IMAGE.
#
# Other variables: IMG_TAG, RELEASES, REGISTRY, REPLICAS, SERVICE, EDGE_IMAGE, STACKS,
# WAIT_TIMEOUT; for autoscaling AUTOSCALE_MIN, AUTOSCALE_MAX, AUTOSCALE_TARGET_RPS (the
# front's labels), AUTOSCALE_INTERVAL_S, AUTOSCALE_DOWN_STABILIZATION_S,
# AUTOSCALE_RATE_WINDOW_S, PROMETHEUS_PORT, AUTOSCALER_IMAGE, DOCKER_GID; for the load RATE,
# SECONDS, LOAD_JSON; for the one stack SHOP_STACK, PROD_TAG, COUPON_TAG, FRONT_TAG,
# PROD_REPLICAS, COUPON_REPLICAS, FRONT_REPLICAS; for the console CONSOLE_PORT, CONSOLE_IMAGE,
# CONSOLE_PROBE_RATE, CONSOLE_PROBE_URL.

HOST_CONFIG    ?= host.mk
ifneq ($(MAKECMDGOALS),configure)
-include $(HOST_CONFIG)
endif

DOCKER         ?= docker
DOCKER_BUILDKIT ?=
SHOP_NAMESPACE ?= shop
BASE_IMAGE     ?= python:3.12-slim
WHEELS_PYTHON  ?=
# Empty: keep what each service runs (see above).
IMG_TAG        ?=
REPLICAS       ?=
# The stacks' own defaults (${IMG_TAG:-latest}, ${REPLICAS:-2}), for a first deploy.
STACK_TAG      := latest
STACK_REPLICAS := 2
RELEASES       ?= 1 2
REGISTRY       ?=
SERVICE        ?= front
NO_IPVS        ?= auto
EDGE_PORT      ?= 80
EDGE_IMAGE     ?= shop/edge-haproxy:bookworm
STACKS         ?= prod coupon front edge autoscale console
NETWORKS       := backend frontend
WAIT_TIMEOUT   ?= 300
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
# The Docker API proxies (the autoscaler's, the console's) run with the group of the engine's
# socket (0 if it cannot be read): this machine's, or the one DOCKER_HOST names (the lab's
# manager).
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
LOAD_JSON        ?=
VERSION        ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
SHOP_STACK     ?= shop
PROD_TAG       ?= $(IMG_TAG)
COUPON_TAG     ?= $(IMG_TAG)
FRONT_TAG      ?= $(IMG_TAG)
PROD_REPLICAS   ?= $(REPLICAS)
COUPON_REPLICAS ?= $(REPLICAS)
FRONT_REPLICAS  ?= $(REPLICAS)

# The host's settings: `make configure` passes what was given (command line, environment)
# as given and the defaults above as the starting point of what it detects.
HOST_VARIABLES := DOCKER DOCKER_BUILDKIT NO_IPVS EDGE_PORT BASE_IMAGE PROMETHEUS_IMAGE \
	WHEELS_PYTHON SHOP_NAMESPACE
CONFIGURE = $(PYTHON) -m shop_tools.configure --output $(HOST_CONFIG) $(strip \
	$(foreach v,$(HOST_VARIABLES),$(if $(filter command line environment,$(origin $(v))),--set '$(v)=$($(v))')) \
	$(foreach v,DOCKER EDGE_PORT BASE_IMAGE PROMETHEUS_IMAGE SHOP_NAMESPACE PYTHON,--default '$(v)=$($(v))'))

# The steps that read the host's settings configure it first when host.mk is missing (make
# then reads the new file and starts again). Not on a dry run (make -n), which changes nothing.
HOST_STEPS := build deploy deploy-edge update scale rollback autoscale load status down clean \
	console shop-deploy shop-update shop-status shop-down
ifeq ($(findstring n,$(firstword -$(MAKEFLAGS))),)
ifneq ($(filter $(HOST_STEPS),$(MAKECMDGOALS)),)
$(HOST_CONFIG):
	@echo "$(HOST_CONFIG) is missing: detecting this host's settings first (make configure)"
	$(CONFIGURE)
endif
endif

# The entry point on this machine: the routing mesh's port 80 (stacks/front.yml), or the edge
# proxy's EDGE_PORT without IPVS (make configure sets EDGE_PORT to 80 where there is IPVS).
ENTRY_URL = http://127.0.0.1$(if $(filter-out 80,$(EDGE_PORT)),:$(EDGE_PORT))/product-detail/2
# A deploy waits until the entry point answers 200 (shop-swarm wait --served), unless the
# engine is elsewhere (DOCKER_HOST) and no ENTRY_URL says where this machine reaches the shop.
SERVED = $(if $(and $(DOCKER_HOST),$(filter file,$(origin ENTRY_URL))),,--served)
empty :=
space := $(empty) $(empty)
comma := ,
SWARM = $(PYTHON) -m shop_tools.swarm --stacks $(subst $(space),$(comma),$(strip $(STACKS))) \
	--url $(ENTRY_URL) --timeout $(WAIT_TIMEOUT)

ifneq ($(REGISTRY),)
# Images from a registry: swarm asks it for each image's digest and pins the service to it,
# so every node runs the same bytes, and a tag pushed again later cannot change what a
# rollback goes back to. A registry that needs a login: `docker login` here, and the nodes
# get the credentials with the service (--with-registry-auth).
IMAGE_NAMESPACE := $(REGISTRY)/$(SHOP_NAMESPACE)
STACK_EDGE_IMAGE := $(REGISTRY)/$(EDGE_IMAGE)
STACK_CONSOLE_IMAGE := $(REGISTRY)/$(CONSOLE_IMAGE)
RESOLVE = --resolve-image always --with-registry-auth
else
# Locally built images have no registry digest to pin: don't ask a registry for one.
IMAGE_NAMESPACE := $(SHOP_NAMESPACE)
STACK_EDGE_IMAGE := $(EDGE_IMAGE)
STACK_CONSOLE_IMAGE := $(CONSOLE_IMAGE)
RESOLVE = --resolve-image never
endif
# Clients from 26.0 on say on every deploy that they do not wait unless told (--detach=false);
# older ones have no such flag. The steps wait with shop_tools.swarm instead. Asked once.
STACK_DETACH = $(eval STACK_DETACH := $(shell $(DOCKER) stack deploy --help 2>/dev/null \
	| grep -q -- --detach && echo --detach=true))$(STACK_DETACH)
DEPLOY = $(strip $(DOCKER) stack deploy $(STACK_DETACH) $(RESOLVE))

# What a stack's service runs now (nothing before its first deploy): its image without a
# digest, its replica count.
running_image = $(firstword $(subst @, ,$(shell $(DOCKER) service inspect --format \
	'{{.Spec.TaskTemplate.ContainerSpec.Image}}' $(1)_app 2>/dev/null)))
running_replicas = $(shell $(DOCKER) service inspect --format \
	'{{.Spec.Mode.Replicated.Replicas}}' $(1)_app 2>/dev/null)
# $(call stack_tag,STACK): IMG_TAG, else the tag it runs, else the stacks' default.
stack_tag = $(or $(IMG_TAG),$(lastword $(subst :, ,$(call running_image,$(1)))),$(STACK_TAG))
# $(call stack_replicas,STACK): REPLICAS, else the count it runs, else the stacks' default;
# then as scripts/autoscaled-replicas.sh says while the autoscaler runs.
stack_replicas = $(shell DOCKER=$(DOCKER) scripts/autoscaled-replicas.sh $(1)_app \
	$(or $(REPLICAS),$(call running_replicas,$(1)),$(STACK_REPLICAS)))

# Spelled out on each deploy line, so that the printed command is the whole command.
STACK_ENV = SHOP_NAMESPACE=$(IMAGE_NAMESPACE) IMG_TAG=$(call stack_tag,$(1)) \
	REPLICAS=$(call stack_replicas,$(1)) \
	AUTOSCALE_MIN=$(AUTOSCALE_MIN) AUTOSCALE_MAX=$(AUTOSCALE_MAX) \
	AUTOSCALE_TARGET_RPS=$(AUTOSCALE_TARGET_RPS)

SERVICES := prod coupon front

ifeq ($(NO_IPVS),1)
STACK_FILES_prod   := -c stacks/prod.yml -c stacks/no-ipvs.yml
STACK_FILES_coupon := -c stacks/coupon.yml -c stacks/no-ipvs.yml
STACK_FILES_front  := -c stacks/front.no-ipvs.yml
EDGE_SERVICE       := edge_proxy
else
STACK_FILES_prod   := -c stacks/prod.yml
STACK_FILES_coupon := -c stacks/coupon.yml
STACK_FILES_front  := -c stacks/front.yml
EDGE_SERVICE       :=
endif

# What each release is, beyond its label: release 1 is the classic front, without couponPrice.
RELEASE_ARGS_1 := --build-arg COUPON_PRICE=false

BUILD = $(if $(DOCKER_BUILDKIT),DOCKER_BUILDKIT=$(DOCKER_BUILDKIT) )$(DOCKER) build \
	-f docker/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION)

# The images docker/build-base-image.sh makes from Debian packages that these settings need:
# the Python base and Prometheus where images cannot be pulled, the edge without IPVS.
DEBIAN_IMAGES = $(if $(filter shop/python-base:%,$(BASE_IMAGE)),python) \
	$(if $(filter 1,$(NO_IPVS)),edge) $(if $(filter shop/prometheus:%,$(PROMETHEUS_IMAGE)),prometheus)

reverse = $(if $(1),$(call reverse,$(wordlist 2,$(words $(1)),$(1))) $(firstword $(1)))
# Of the shop: stacks deployed now, images `make build` made.
deployed_stacks = $(filter $(STACKS),$(shell $(DOCKER) stack ls --format '{{.Name}}' 2>/dev/null))
shop_images = $(shell $(DOCKER) image ls --format '{{.Repository}}:{{.Tag}}' \
	--filter 'reference=$(SHOP_NAMESPACE)/*-service' --filter 'reference=$(AUTOSCALER_IMAGE)' \
	--filter 'reference=$(CONSOLE_IMAGE)' 2>/dev/null)

.PHONY: help configure base-images wheels networks build push deploy deploy-edge status scale \
	update rollback down clean cluster-up cluster-deploy cluster-status cluster-down \
	test-cluster autoscale load stacks shop-deploy shop-update shop-status shop-down console \
	push-console console-screenshot

help:
	@sed -n '1,/^$$/p' Makefile

configure:
	$(CONFIGURE)

base-images:
	$(foreach kind,$(or $(strip $(DEBIAN_IMAGES)),all),\
	DOCKER=$(DOCKER) docker/build-base-image.sh $(kind)$(newline))

# The wheelhouse in the build context, made again when a lock file or host.mk changes.
wheels: wheels/.made
wheels/.made: requirements.lock autoscaler/requirements.lock pyproject.toml $(wildcard $(HOST_CONFIG))
	scripts/wheelhouse.sh $(or $(WHEELS_PYTHON),python3)
	@touch $@

networks:
	DOCKER=$(DOCKER) scripts/create-networks.sh $(NETWORKS)

# Release 1 and release 2 of every service from this one tree; :latest is release 2.
build: $(if $(strip $(DEBIAN_IMAGES)),base-images) $(if $(WHEELS_PYTHON),wheels/.made)
	$(foreach svc,$(SERVICES),$(foreach rel,$(RELEASES),\
	$(BUILD) --target $(svc)-service --build-arg RELEASE=$(rel) $(RELEASE_ARGS_$(rel)) \
		-t $(SHOP_NAMESPACE)/$(svc)-service:$(rel) .$(newline)))
	$(if $(filter 2,$(RELEASES)),$(foreach svc,$(SERVICES),\
	$(DOCKER) tag $(SHOP_NAMESPACE)/$(svc)-service:2 $(SHOP_NAMESPACE)/$(svc)-service:latest$(newline)))
	$(BUILD) --target autoscaler -t $(AUTOSCALER_IMAGE) .
	$(BUILD) --target console -t $(CONSOLE_IMAGE) .
	@echo "built: $(SHOP_NAMESPACE)/{prod,coupon,front}-service:{$(subst $(space),$(comma),$(strip \
		$(RELEASES) $(if $(filter 2,$(RELEASES)),latest)))} $(AUTOSCALER_IMAGE) and $(CONSOLE_IMAGE), on $(BASE_IMAGE)"

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
	$(foreach s,$(SERVICES),$(call STACK_ENV,$(s)) $(DEPLOY) $(STACK_FILES_$(s)) $(s)$(newline))
	$(if $(EDGE_SERVICE),$(EDGE_DEPLOY))
	$(SWARM) wait $(SERVED) $(foreach s,$(SERVICES),$(s)_app) $(EDGE_SERVICE)

EDGE_DEPLOY = EDGE_PORT=$(EDGE_PORT) EDGE_IMAGE=$(STACK_EDGE_IMAGE) $(DEPLOY) -c stacks/edge.yml edge
deploy-edge:
	$(EDGE_DEPLOY)
	$(SWARM) wait $(SERVED) edge_proxy

status:
	$(SWARM) status

# REPLICAS replicas of SERVICE, at the tag it runs.
scale:
	$(if $(REPLICAS),,$(error make scale needs REPLICAS=N, e.g. make scale REPLICAS=4))
	$(call STACK_ENV,$(SERVICE)) $(DEPLOY) $(STACK_FILES_$(SERVICE)) $(SERVICE)
	$(SWARM) wait $(SERVICE)_app

update: IMG_TAG := $(or $(IMG_TAG),$(STACK_TAG))
update:
	$(call STACK_ENV,$(SERVICE)) $(DEPLOY) $(STACK_FILES_$(SERVICE)) $(SERVICE)
	$(SWARM) wait $(SERVICE)_app

# Swarm keeps one previous spec per service: say what it is, then go back to it.
rollback:
	$(SWARM) previous $(SERVICE)_app
	$(DOCKER) service rollback --detach $(SERVICE)_app
	$(SWARM) wait --rollback $(SERVICE)_app

# The stacks, then (once their tasks are gone) the networks and Prometheus' tmpfs volume,
# which outlive them.
down:
	$(DOCKER) stack rm $(strip $(call reverse,$(STACKS)))
	$(SWARM) removed
	$(foreach n,$(NETWORKS),$(if $(shell $(DOCKER) network ls -q --filter name=^$(n)$$ 2>/dev/null),\
	$(DOCKER) network rm $(n)$(newline)))
	$(DOCKER) volume rm autoscale_prometheus-data 2>/dev/null || true
	$(SWARM) removed --networks $(subst $(space),$(comma),$(NETWORKS)) --volumes autoscale_prometheus-data

# The images `make build` made, and what failed legacy builds leave: untagged build stages and
# stopped build containers (both labelled io.swarm-shop.stage=build in docker/Dockerfile).
clean:
	$(if $(deployed_stacks),@echo "the shop is deployed (stacks $(deployed_stacks)): make down first"; exit 1)
	$(if $(shop_images),$(DOCKER) image rm $(shop_images))
	$(DOCKER) container prune --force --filter label=io.swarm-shop.stage=build
	$(DOCKER) image prune --force --filter label=io.swarm-shop.stage=build
	@echo "removed $(words $(shop_images)) images of the shop and the builds' leftovers"

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
	$(SWARM) wait autoscale_prometheus autoscale_scaler autoscale_docker-api

# RATE requests/s for SECONDS seconds (at most 600) on the shop's entry point on this machine,
# with one live progress line: sent, failed, p99, the front's replicas. LOAD_JSON=FILE: the
# report as JSON too.
load:
	$(PYTHON) -m shop_tools.load --rate $(RATE) --duration $(SECONDS) \
		--url $(ENTRY_URL) --service front_app \
		--docker $(DOCKER)$(if $(LOAD_JSON), --json $(LOAD_JSON))

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
# $(call SHOP_TAG,SERVICE) / SHOP_REPLICAS: as for the per-service stacks, a step changes only
# what it is told: IMG_TAG / REPLICAS if given, else what the service runs, else the default.
SHOP_TAG = $(or $(IMG_TAG),$(call RUNNING,$(1),tag,$(STACK_TAG)))
SHOP_REPLICAS = $(or $(REPLICAS),$(call RUNNING,$(1),replicas,$(STACK_REPLICAS)))
SHOP_LABEL = label=com.docker.stack.namespace=$(SHOP_STACK)
SHOP_SWARM = $(PYTHON) -m shop_tools.swarm --stacks $(SHOP_STACK) --url $(ENTRY_URL) \
	--timeout $(WAIT_TIMEOUT)
SHOP_SERVICES = $(foreach s,$(SERVICES),$(SHOP_STACK)_$(s)) \
	$(if $(filter 1,$(NO_IPVS)),$(SHOP_STACK)_edge)

shop-deploy shop-update: PROD_TAG = $(call SHOP_TAG,prod)
shop-deploy shop-update: COUPON_TAG = $(call SHOP_TAG,coupon)
shop-deploy shop-update: FRONT_TAG = $(call SHOP_TAG,front)
shop-deploy shop-update: PROD_REPLICAS = $(call SHOP_REPLICAS,prod)
shop-deploy shop-update: COUPON_REPLICAS = $(call SHOP_REPLICAS,coupon)
shop-deploy shop-update: FRONT_REPLICAS = $(call SHOP_REPLICAS,front)
shop-deploy:
	$(strip $(SHOP_ENV)) $(DEPLOY) -c $(SHOP_FILE) $(SHOP_STACK)
	$(SHOP_SWARM) wait $(SERVED) $(SHOP_SERVICES)

# `docker stack deploy` applies the whole file: SERVICE gets IMG_TAG (latest unless given),
# every other service the tag it runs, and each keeps its replica count, so only SERVICE's
# tasks are replaced.
shop-update: IMG_TAG := $(or $(IMG_TAG),$(STACK_TAG))
shop-update: SHOP_TAG = $(if $(filter $(1),$(SERVICE)),$(IMG_TAG),$(call RUNNING,$(1),tag,$(IMG_TAG)))
shop-update: SHOP_REPLICAS = $(call RUNNING,$(1),replicas,$(or $(REPLICAS),$(STACK_REPLICAS)))
shop-update:
	$(if $(filter $(SERVICE),$(SERVICES)),,$(error SERVICE must be one of $(SERVICES)))
	$(strip $(SHOP_ENV)) $(DEPLOY) -c $(SHOP_FILE) $(SHOP_STACK)
	$(SHOP_SWARM) wait $(SHOP_STACK)_$(SERVICE)

shop-status:
	$(SHOP_SWARM) status

# `docker stack rm` returns at once; its tasks drain (up to stop_grace_period) before the
# stack's networks can go.
shop-down:
	$(DOCKER) stack rm $(SHOP_STACK)
	$(SHOP_SWARM) removed --networks $(SHOP_STACK)_backend,$(SHOP_STACK)_frontend

# The stack files of the shop's services, the edge and the one stack, from one definition.
stacks:
	$(PYTHON) scripts/render_stacks.py

# The console (stacks/console.yml) on a manager, port CONSOLE_PORT in host mode; it reads the
# swarm through its filtering proxy (stacks/docker-api.yml, GET only) and probes the shop's
# entry point. With REGISTRY, the image comes from there: `make push-console REGISTRY=...`
# first, from the engine that built it.
console: networks
	DOCKER_API_CONSUMER=console DOCKER_API_CONFIG_VERSION=$(call DOCKER_API_DIGEST,console) \
		DOCKER_GID=$(DOCKER_GID) EDGE_IMAGE=$(STACK_EDGE_IMAGE) \
		CONSOLE_IMAGE=$(STACK_CONSOLE_IMAGE) CONSOLE_PORT=$(CONSOLE_PORT) \
		CONSOLE_PROBE_URL=$(CONSOLE_PROBE_URL) CONSOLE_PROBE_RATE=$(CONSOLE_PROBE_RATE) \
		$(DEPLOY) -c stacks/console.yml -c stacks/docker-api.yml console
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
	SHOP_CONSOLE_SCREENSHOT=$(CURDIR)/docs/console.png \
		$(PYTHON) -m pytest tests/deploy/test_console.py -m swarm -p no:cacheprovider

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
