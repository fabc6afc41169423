# Sourced by the install-*-deps.sh scripts: `need COMMAND-OR-PATH PACKAGE` notes a missing
# tool; `install_missing WHAT` installs the noted packages with apt as root, saying so, or
# (not root) names them and fails. Set `who` (the script's name for its messages) first.
missing=""
need() { # need COMMAND-OR-PATH PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "$who: $1 not found (package $2)"
    case " $missing " in *" $2 "*) ;; *) missing="$missing $2" ;; esac
  fi
}

install_missing() { # install_missing WHAT-NEEDS-THEM
  [ -n "$missing" ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "$who: not root; please install:$missing" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing" >&2
    exit 1
  fi
  echo "$who: installing$missing (needed by $1)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2086 # $missing is a space-separated package list
  apt-get install -y --no-install-recommends $missing
}
