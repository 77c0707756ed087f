# cri-net's node image: one image for every node, run by deploy/cri-net.yaml.
#
#   docker build -t cri-net:dev .                       (or: buildah bud -t cri-net:dev .)
#
# The build stage compiles the native CNI launcher statically (it runs on the node, which has
# no Python, no compiler and maybe another libc) and installs cri-net with its pinned
# dependencies (constraints.txt) into a venv. The final stage adds Debian's CNI plugins and
# iptables (portmap, masquerading), and runs `cri-net` (default: `cri-net serve`).
#
# Offline builds: put wheels of the dependencies into ./wheels of the build context and pass
#   --build-arg PIP_ARGS="--no-index --find-links /src/wheels"
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
ARG PIP_ARGS=""
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
# The launcher's in-process fallback is the Python launcher `cri-net cni-plugin install` puts
# beside it; on a node without one it waits for cri-net serve, then answers "try again later".
RUN mkdir -p /opt/cri-net/shim \
 && gcc -static -O2 -Wall -s -DFALLBACK='"/opt/cni/bin/.cri-net-py"' -o /opt/cri-net/shim/cri-net cri_net/plugin/shim.c \
 && python3 -m venv /opt/cri-net/venv \
 && /opt/cri-net/venv/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_ARGS} -c constraints.txt /src \
 && /opt/cri-net/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools

FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 containernetworking-plugins iptables \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY --from=build /opt/cri-net /opt/cri-net
ENV PATH=/opt/cri-net/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["cri-net"]
CMD ["serve"]
