#!/usr/bin/env bash
# Replays a Dockerfile's build stage outside Docker, since no Docker engine runs where CI does: an
# empty temporary folder plays the image's filesystem root; the stage's COPY lines copy exactly what
# they name from the build context (honouring .dockerignore) into it, in order, and its RUN lines run
# there, each in the current WORKDIR (relative WORKDIRs join the previous one, as Docker's do), with
# the stage's ARGs and ENVs in the environment. A step that needs a file not yet copied fails here
# as it would in `docker build`. Finally every path a later stage copies `--from=` this stage must exist.
#
# Not replayed: the base image itself. RUN lines that install system packages (apt-get) are skipped
# and their tools (python3, make, g++ for native modules) must be on this machine; RUN's --mount and
# --network flags are dropped (a cache mount of /root/.npm is this machine's npm cache). A RUN line
# runs on this machine, so an absolute path in it is this machine's, not the temporary root's.
#
#   scripts/docker-build-replay.sh [--file Dockerfile] [--stage build] [--context .] [--build-arg K=V ...] [--keep]
set -euo pipefail

dockerfile=Dockerfile
stage=build
context=.
keep=0
declare -A build_args=()
while (( $# )); do
  case "$1" in
    --file) dockerfile="$2"; shift 2 ;;
    --stage) stage="$2"; shift 2 ;;
    --context) context="$2"; shift 2 ;;
    --build-arg) build_args["${2%%=*}"]="${2#*=}"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "docker-build-replay: unknown argument $1" >&2; exit 2 ;;
  esac
done
context="$(cd "$context" && pwd)"
dockerfile="$(cd "$(dirname "$dockerfile")" && pwd)/$(basename "$dockerfile")"

fail() { echo "docker-build-replay: $*" >&2; exit 1; }

# ---- the Dockerfile as instructions: continuations joined, comment lines dropped -------------------
instructions=()
current=""
while IFS= read -r line || [[ -n "$line" ]]; do
  if [[ "$line" =~ ^[[:space:]]*# ]] || { [[ -z "$current" ]] && [[ "$line" =~ ^[[:space:]]*$ ]]; }; then
    continue
  fi
  if [[ "$line" =~ ^(.*)\\[[:space:]]*$ ]]; then
    current+="${BASH_REMATCH[1]} "
    continue
  fi
  current+="$line"
  instructions+=("$current")
  current=""
done < "$dockerfile"
[[ -z "$current" ]] || instructions+=("$current")

# ---- .dockerignore patterns -------------------------------------------------------------------------
ignores=()
if [[ -f "$context/.dockerignore" ]]; then
  while IFS= read -r pattern || [[ -n "$pattern" ]]; do
    pattern="${pattern#"${pattern%%[![:space:]]*}"}"; pattern="${pattern%"${pattern##*[![:space:]]}"}"
    [[ -z "$pattern" || "$pattern" == \#* ]] && continue
    [[ "$pattern" == '!'* ]] && fail ".dockerignore exceptions (!) are not replayed: $pattern"
    pattern="${pattern#/}"; pattern="${pattern#./}"; pattern="${pattern%/}"
    ignores+=("$pattern")
  done < "$context/.dockerignore"
fi

# Whether a context-relative path is excluded: it, or a folder above it, matches a pattern. A pattern
# is a shell pattern here ("*" also crosses "/", which Docker's does not; "**/x" also matches "x").
ignored() {
  local path="$1" prefix="" part pattern
  local IFS=/
  for part in $path; do
    prefix="${prefix:+$prefix/}$part"
    for pattern in "${ignores[@]}"; do
      # shellcheck disable=SC2053
      [[ "$prefix" == $pattern ]] && return 0
      [[ "$pattern" == '**/'* && "$prefix" == ${pattern#\*\*/} ]] && return 0
    done
  done
  return 1
}

# ---- variables: global ARGs (before the first FROM), then the stage's ARG and ENV ------------------
declare -A global_args=()
declare -A vars=()
expand() {
  local text="$1" name
  while [[ "$text" =~ \$\{([A-Za-z_][A-Za-z0-9_]*)\} || "$text" =~ \$([A-Za-z_][A-Za-z0-9_]*) ]]; do
    name="${BASH_REMATCH[1]}"
    text="${text/"${BASH_REMATCH[0]}"/"${vars[$name]:-}"}"
  done
  printf '%s' "$text"
}

# npm resolves from its cache first (the lockfile pins every integrity), so a replay needs the
# network only for what this machine has never fetched.
export npm_config_prefer_offline="${npm_config_prefer_offline:-true}"

root="$(mktemp -d "${TMPDIR:-/tmp}/docker-build-replay.XXXXXX")"
if (( keep )); then echo "docker-build-replay: keeping $root"; else trap 'rm -rf "$root"' EXIT; fi
workdir=/
in_stage=0
seen_from=0
stage_found=0
later_copies=()
stage_dirs=()

copy_into() {  # copy_into <context-relative source> <absolute destination in root> <destination is a folder>
  local source="$1" dest="$2" into="$3" file relative
  [[ -e "$context/$source" ]] || fail "COPY $source: not in the build context"
  ignored "$source" && fail "COPY $source: excluded by .dockerignore"
  if [[ -d "$context/$source" ]]; then
    mkdir -p "$root$dest"
    while IFS= read -r -d '' file; do
      relative="${file#"$context/"}"
      ignored "$relative" && continue
      mkdir -p "$root$dest/$(dirname "${relative#"$source"}")"
      cp -P "$file" "$root$dest/${relative#"$source"/}"
    done < <(find "$context/$source" \( -type f -o -type l \) -print0)
  elif (( into )); then
    mkdir -p "$root$dest"
    cp -P "$context/$source" "$root$dest/$(basename "$source")"
  else
    mkdir -p "$(dirname "$root$dest")"
    cp -P "$context/$source" "$root$dest"
  fi
}

for instruction in "${instructions[@]}"; do
  keyword="${instruction%%[[:space:]]*}"; keyword="${keyword^^}"
  rest="${instruction#*[[:space:]]}"; rest="${rest#"${rest%%[![:space:]]*}"}"
  if [[ "$keyword" == FROM ]]; then
    seen_from=1
    if [[ "$rest" =~ [[:space:]][Aa][Ss][[:space:]]+([^[:space:]]+)[[:space:]]*$ && "${BASH_REMATCH[1]}" == "$stage" ]]; then
      in_stage=1; stage_found=1
      echo "== replaying stage '$stage' of $dockerfile in $root"
    else
      in_stage=0
    fi
    continue
  fi
  if (( ! seen_from )); then
    if [[ "$keyword" == ARG ]]; then global_args["${rest%%=*}"]="$( [[ "$rest" == *=* ]] && printf '%s' "${rest#*=}" )"; fi
    continue
  fi
  if (( ! in_stage )); then
    if [[ "$keyword" == COPY && "$rest" =~ --from=$stage[[:space:]]+(.*)$ ]]; then
      read -r -a parts <<< "${BASH_REMATCH[1]}"
      later_copies+=("${parts[@]:0:${#parts[@]}-1}")
    fi
    continue
  fi
  case "$keyword" in
    ARG)
      name="${rest%%=*}"
      if [[ -n "${build_args[$name]+set}" ]]; then vars["$name"]="${build_args[$name]}"
      elif [[ "$rest" == *=* ]]; then vars["$name"]="$(expand "${rest#*=}")"
      else vars["$name"]="${global_args[$name]:-}"; fi
      ;;
    ENV)
      if [[ "$rest" == *=* ]]; then
        eval "pairs=($rest)"
        for pair in "${pairs[@]}"; do vars["${pair%%=*}"]="$(expand "${pair#*=}")"; done
      else
        vars["${rest%%[[:space:]]*}"]="$(expand "${rest#*[[:space:]]}")"
      fi
      ;;
    WORKDIR)
      target="$(expand "$rest")"
      [[ "$target" == /* ]] || target="${workdir%/}/$target"
      workdir="$target"
      stage_dirs+=("$workdir")
      mkdir -p "$root$workdir"
      echo "-- WORKDIR $workdir"
      ;;
    COPY|ADD)
      [[ "$keyword" == ADD ]] && fail "ADD is not replayed; use COPY: $instruction"
      read -r -a parts <<< "$(expand "$rest")"
      sources=()
      for part in "${parts[@]}"; do
        case "$part" in
          --from=*) fail "COPY --from in the replayed stage is not replayed: $instruction" ;;
          --*) ;;
          *) sources+=("$part") ;;
        esac
      done
      dest="${sources[-1]}"; unset 'sources[-1]'
      into=0; { [[ "$dest" == */ || "$dest" == . || "$dest" == */. ]] || (( ${#sources[@]} > 1 )); } && into=1
      dest="${dest#./}"; [[ "$dest" == . ]] && dest=""
      [[ "$dest" == /* ]] || dest="${workdir%/}/$dest"
      dest="${dest%/.}"; [[ "$dest" == / ]] || dest="${dest%/}"
      echo "-- COPY ${sources[*]} -> $dest"
      for source in "${sources[@]}"; do
        source="${source#./}"
        if [[ "$source" == *[\*\?\[]* ]]; then
          matched=0
          for match in $(cd "$context" && compgen -G "$source" || true); do copy_into "$match" "$dest" 1; matched=1; done
          (( matched )) || fail "COPY $source: no file matches"
        else
          copy_into "$source" "$dest" "$into"
        fi
      done
      ;;
    RUN)
      command="$rest"
      while [[ "$command" =~ ^--[a-z]+=[^[:space:]]*[[:space:]]+(.*)$ ]]; do command="${BASH_REMATCH[1]}"; done
      [[ "$command" == \[* ]] && fail "RUN in exec form is not replayed: $instruction"
      if [[ "$command" =~ ^apt-get[[:space:]] ]]; then
        echo "-- RUN (skipped: system packages come from this machine) ${command:0:80}"
        continue
      fi
      echo "-- RUN $command"
      env_args=()
      for name in "${!vars[@]}"; do env_args+=("$name=${vars[$name]}"); done
      started=$SECONDS
      (cd "$root$workdir" && env "${env_args[@]}" sh -c "$command") \
        || fail "RUN failed (exit $?) in WORKDIR $workdir: $command"
      echo "   ($(( SECONDS - started )) s)"
      ;;
    USER|LABEL|EXPOSE|VOLUME|CMD|ENTRYPOINT|HEALTHCHECK|STOPSIGNAL|SHELL|ONBUILD)
      echo "-- $keyword (not replayed)"
      ;;
    *) fail "unknown instruction: $instruction" ;;
  esac
done

(( stage_found )) || fail "no stage named '$stage' in $dockerfile"

# What later stages take from this one must be there: each path under one of the stage's WORKDIRs (a
# path elsewhere is the base image's, which is not replayed).
for path in "${later_copies[@]}"; do
  made=0
  for dir in "${stage_dirs[@]}"; do [[ "$path" == "${dir%/}/"* ]] && made=1; done
  if (( ! made )); then
    echo "-- later stage copies $path: from the base image, not checked"
  elif [[ -e "$root$path" ]]; then
    echo "-- later stage copies $path: present"
  else
    fail "a later stage copies $path --from=$stage, which the stage did not make"
  fi
done
echo "== stage '$stage' replayed"
