# tests/image/base.sh: the local base images (sourced by run.sh). No registry is reachable,
# so both come from one Debian bookworm tree that debootstrap makes on the host:
#
#   $BASE_DEBIAN  the whole tree (minbase + openssh-server, curl, ca-certificates): the
#                 laptop, app and Prometheus images start from it.
#   $BASE_CC      the stand-in for gcr.io/distroless/cc-debian12:nonroot: only glibc,
#                 libgcc, base-files (/run, /tmp, ...), the CA certificates, /etc/passwd and
#                 /etc/group with `nonroot` 65532, /home/nonroot; no shell, no package manager.
#
# Both are tagged with a hash of this file: an edit here builds them anew, otherwise the
# engine's data root already has them. The tree's tarball under target/image/cache/ is
# named by the suite and packages: debootstrap runs again only when those change.

BASE_SUITE=bookworm
BASE_PACKAGES=openssh-server,curl,ca-certificates
BASE_MIRROR=http://deb.debian.org/debian
BASE_KEY=$(sha256sum "$ROOT/tests/image/base.sh" | cut -c1-12)
BASE_DEBIAN=tether-test/debian:$BASE_KEY
BASE_CC=tether-test/cc:$BASE_KEY
# the tree depends only on what debootstrap is given
BASE_TREE_TAR=$IMG/cache/$BASE_SUITE-$(echo "$BASE_SUITE $BASE_PACKAGES" | sha256sum | cut -c1-12).tar
BASE_PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

base_images() {
  if docker image inspect "$BASE_DEBIAN" "$BASE_CC" >/dev/null 2>&1; then
    echo "cached: $BASE_DEBIAN, $BASE_CC"
    return 0
  fi
  [[ -f "$BASE_TREE_TAR" ]] || base_debootstrap
  docker import --change "$BASE_PATH_ENV" "$BASE_TREE_TAR" "$BASE_DEBIAN" >/dev/null
  base_cc_tar | docker import --change "$BASE_PATH_ENV" \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' - "$BASE_CC" >/dev/null
  echo "built: $BASE_DEBIAN, $BASE_CC"
}

# base_debootstrap: the tree, as a tarball under target/image/cache/ (about a minute).
base_debootstrap() {
  local tree=$IMG/cache/tree
  rm -rf "$tree" && mkdir -p "$tree"
  echo "debootstrap $BASE_SUITE (--include=$BASE_PACKAGES) from $BASE_MIRROR"
  if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$tree" \
    "$BASE_MIRROR" >"$IMG/cache/debootstrap.log" 2>&1; then
    tail -20 "$IMG/cache/debootstrap.log" >&2
    return 1
  fi
  rm -f "$tree"/etc/ssh/ssh_host_*key* # every image that runs sshd brings its own host key
  tar -C "$tree" -cf "$BASE_TREE_TAR.part" . && mv "$BASE_TREE_TAR.part" "$BASE_TREE_TAR"
  rm -rf "$tree"
}

# base_cc_tar: writes the distroless/cc stand-in as a tarball on stdout.
base_cc_tar() {
  local tree=$IMG/cache/cc-tree extra=$IMG/cache/cc-extra
  rm -rf "$tree" "$extra" && mkdir -p "$tree" "$extra/etc" "$extra/home/nonroot"
  tar -C "$tree" -xf "$BASE_TREE_TAR"
  # Every file and directory of these packages (base-files has /run, /tmp, /home, ...),
  # by the path it really has in the tree (bookworm's /lib is a symlink to usr/lib), plus
  # the merged-/usr symlinks.
  dpkg-query --admindir="$tree/var/lib/dpkg" -L libc6 libgcc-s1 base-files | grep "^/" | grep -vx "/\." |
    while read -r path; do
      [[ -e "$tree$path" || -L "$tree$path" ]] || continue
      echo "$(cd "$tree$(dirname "$path")" && pwd -P | sed "s|^$tree||")/$(basename "$path")"
    done | sed 's|^/*|./|' >"$extra.list"
  printf './%s\n' bin lib lib64 sbin etc/ssl/certs/ca-certificates.crt etc/nsswitch.conf >>"$extra.list"
  sort -u -o "$extra.list" "$extra.list"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$extra/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$extra/etc/group"
  chown 65532:65532 "$extra/home/nonroot" && chmod 0700 "$extra/home/nonroot"
  tar -C "$tree" -cf "$extra.tar" --no-recursion -T "$extra.list"
  tar -C "$extra" -rf "$extra.tar" ./etc/passwd ./etc/group ./home/nonroot
  cat "$extra.tar"
  rm -rf "$tree" "$extra" "$extra.list" "$extra.tar"
}
