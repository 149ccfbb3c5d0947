#!/usr/bin/env bash
# Deploys the voice front door to a hosted Supabase project (Supabase CLI and Management API) and
# wires a Twilio number to it (Twilio REST API 2010-04-01): link, migrations, the org files
# (supabase/orgs/*.toml, when SUPABASE_DB_URL is set), secrets, the three functions, the number's
# webhooks, then a Twilio-signed smoke test of voice-frontdoor.
#
# Usage: scripts/deploy.sh [--project-ref REF] [--env-file PATH] [--dry-run]
#
#   --project-ref REF  Supabase project ref; else SUPABASE_PROJECT_REF, else the linked project
#                      (supabase/.temp/project-ref).
#   --env-file PATH    the functions' settings (default supabase/.env; see .env.example). Only
#                      the keys .env.example lists are sent as secrets, never SUPABASE_* (set by
#                      the platform) nor DATABASE_URL (local runs only).
#   --dry-run          print every command and request, secrets masked; change nothing.
#
# Needs: a Supabase login (SUPABASE_ACCESS_TOKEN or `npx supabase login`), `npm install` (the CLI
# pinned in package.json; SUPABASE_CLI=/path overrides it, for tests), curl and openssl, and node
# when TWILIO_PHONE_NUMBER is set. SUPABASE_DB_PASSWORD, when exported, is read by the CLI for
# `db push`. Every step is idempotent: running the script again is safe.
set -euo pipefail

# Associative arrays and mapfile: macOS ships bash 3.2.
if ((BASH_VERSINFO[0] < 4)); then
  echo "deploy: bash 4 or newer is needed (on macOS: brew install bash, then run it with that bash)" >&2
  exit 1
fi

readonly FUNCTIONS=(voice-frontdoor voice-stream voice-action)
readonly REQUIRED_SETTINGS=(TWILIO_AUTH_TOKEN TWILIO_ACCOUNT_SID OPENAI_API_KEY VOICE_INTERNAL_SECRET)
# Listed in .env.example for local runs, but never sent to the hosted functions: a local
# DATABASE_URL would win over the SUPABASE_DB_URL the platform sets.
readonly LOCAL_ONLY_SETTINGS=(DATABASE_URL)
readonly MIN_INTERNAL_SECRET_CHARS=32
readonly TWILIO_API_VERSION=2010-04-01
# Twilio connection overrides: retry a status callback 3 times on any failure (connection,
# timeout, 4xx, 5xx), so a callback voice-action could not store (it answers 5xx) is not lost.
readonly STATUS_CALLBACK_OVERRIDES='#rc=3&rp=all'
# The smoke test's call: a fixed CallSid makes reruns idempotent (voice-frontdoor records it once,
# by idempotency key), and Twilio's magic test number belongs to no org, so no org's numbers
# count it.
readonly SMOKE_CALL_SID=CA00000000000000000000000000000000
readonly SMOKE_NUMBER=+15005550006
readonly SMOKE_ATTEMPTS=3
readonly SMOKE_RETRY_DELAY_SECONDS=3

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT_DIR

usage() {
  sed -n '6,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
  printf 'deploy: %s\n' "$*" >&2
  exit 1
}

step() {
  printf '\n==> %s\n' "$*"
}

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------

project_ref_flag=""
env_file=""
dry_run=0
while (($# > 0)); do
  case "$1" in
    --project-ref)
      (($# >= 2)) || die "--project-ref needs a value"
      project_ref_flag=$2
      shift 2
      ;;
    --project-ref=*)
      project_ref_flag=${1#*=}
      shift
      ;;
    --env-file)
      (($# >= 2)) || die "--env-file needs a value"
      env_file=$2
      shift 2
      ;;
    --env-file=*)
      env_file=${1#*=}
      shift
      ;;
    --dry-run)
      dry_run=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
done

# A relative --env-file is relative to where the script was started; the default to the project.
if [[ -z $env_file ]]; then
  env_file="$ROOT_DIR/supabase/.env"
elif [[ $env_file != /* ]]; then
  env_file="$PWD/$env_file"
fi
cd "$ROOT_DIR"

# ---------------------------------------------------------------------------------------------
# Preflight: every problem is collected, then all are reported at once.
# ---------------------------------------------------------------------------------------------

problems=()
problem() {
  problems+=("$*")
}

# The env file, parsed like dotenv: KEY=value, optional `export`, quotes, # comments.
declare -A settings=()
declare -A raw_lines=()
read_env_file() {
  local line key value
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]] ||
      continue
    key=${BASH_REMATCH[2]}
    value=${BASH_REMATCH[3]}
    if [[ $value =~ ^\"(.*)\"[[:space:]]*(#.*)?$ || $value =~ ^\'(.*)\'[[:space:]]*(#.*)?$ ]]; then
      value=${BASH_REMATCH[1]}
    else
      value=${value%%[[:space:]]#*}
      value=${value%"${value##*[![:space:]]}"}
    fi
    settings[$key]=$value
    raw_lines[$key]="$key=${line#*=}"
  done <"$1"
}

setting() {
  printf '%s' "${settings[$1]:-}"
}

if [[ -f $env_file ]]; then
  read_env_file "$env_file"
else
  problem "env file not found: $env_file (copy .env.example to supabase/.env and fill it in, or pass --env-file PATH)"
fi

# The product's settings: every key .env.example lists, minus the platform's and local-only ones.
product_keys=()
if [[ -f .env.example ]]; then
  while IFS= read -r key; do
    [[ $key == SUPABASE_* ]] && continue
    [[ " ${LOCAL_ONLY_SETTINGS[*]} " == *" $key "* ]] && continue
    product_keys+=("$key")
  done < <(grep -oE '^[A-Z][A-Z0-9_]*=' .env.example | tr -d '=')
else
  problem ".env.example not found in $ROOT_DIR: it lists the settings to deploy"
fi

if [[ -f $env_file ]]; then
  missing=()
  for key in "${REQUIRED_SETTINGS[@]}"; do
    [[ -n $(setting "$key") ]] || missing+=("$key")
  done
  if ((${#missing[@]} > 0)); then
    problem "missing in $env_file: ${missing[*]}"
  fi
  internal_secret=$(setting VOICE_INTERNAL_SECRET)
  if [[ -n $internal_secret ]] && ((${#internal_secret} < MIN_INTERNAL_SECRET_CHARS)); then
    problem "VOICE_INTERNAL_SECRET must be at least $MIN_INTERNAL_SECRET_CHARS characters (openssl rand -hex 32 makes one)"
  fi
  account_sid=$(setting TWILIO_ACCOUNT_SID)
  if [[ -n $account_sid && ! $account_sid =~ ^AC[0-9a-fA-F]{32}$ ]]; then
    problem "TWILIO_ACCOUNT_SID must look like AC followed by 32 hex digits"
  fi
  phone_number=$(setting TWILIO_PHONE_NUMBER)
  if [[ -n $phone_number && ! $phone_number =~ ^\+[1-9][0-9]{6,14}$ ]]; then
    problem "TWILIO_PHONE_NUMBER must be E.164 (+ and 7 to 15 digits), e.g. +15550100000"
  fi
  public_url=$(setting PUBLIC_FUNCTIONS_URL)
  if [[ -n $public_url && ! $public_url =~ ^https?://[^/]+ ]]; then
    problem "PUBLIC_FUNCTIONS_URL must be an http(s) URL, e.g. https://voice.example.com/functions/v1"
  fi
fi

# The Supabase CLI pinned in package.json, never a global one.
# The pinned Deno runs scripts/org.ts; DENO_BIN=/path overrides it, for tests.
deno_cmd=("${DENO_BIN:-$ROOT_DIR/node_modules/.bin/deno}")

supabase_cmd=()
if [[ -n ${SUPABASE_CLI:-} ]]; then
  supabase_cmd=("$SUPABASE_CLI")
elif [[ -x $ROOT_DIR/node_modules/.bin/supabase ]]; then
  supabase_cmd=("$ROOT_DIR/node_modules/.bin/supabase")
  pinned=$(sed -n 's/.*"supabase":[[:space:]]*"\([^"]*\)".*/\1/p' package.json | head -n 1)
  installed=$("${supabase_cmd[@]}" --version 2>/dev/null | tail -n 1 || true)
  if [[ -n $pinned && $installed != "$pinned" ]]; then
    problem "node_modules holds Supabase CLI '${installed:-unknown}' but package.json pins $pinned: run npm install"
  fi
else
  problem "Supabase CLI not installed: run npm install (package.json pins its version)"
fi

# A Supabase login: the token in the environment, the CLI's token file, or (keyring logins)
# whatever `supabase whoami` accepts.
if [[ -z ${SUPABASE_ACCESS_TOKEN:-} && ! -s ${HOME:-}/.supabase/access-token ]]; then
  if ((${#supabase_cmd[@]} == 0)) || ! "${supabase_cmd[@]}" whoami >/dev/null 2>&1; then
    problem "not logged in to Supabase: run npx supabase login, or set SUPABASE_ACCESS_TOKEN"
  fi
fi

project_ref=$project_ref_flag
ref_source=--project-ref
if [[ -z $project_ref && -n ${SUPABASE_PROJECT_REF:-} ]]; then
  project_ref=$SUPABASE_PROJECT_REF
  ref_source=SUPABASE_PROJECT_REF
fi
if [[ -z $project_ref && -s supabase/.temp/project-ref ]]; then
  project_ref=$(tr -d '[:space:]' <supabase/.temp/project-ref)
  ref_source="the linked project (supabase/.temp/project-ref)"
fi
if [[ -z $project_ref ]]; then
  problem "no Supabase project ref: pass --project-ref REF, set SUPABASE_PROJECT_REF, or link once with npx supabase link --project-ref REF"
elif [[ ! $project_ref =~ ^[a-z]{20}$ ]]; then
  problem "project ref '$project_ref' from $ref_source is not a Supabase project ref (20 lowercase letters)"
fi

# Twilio cannot send a Supabase JWT: the functions verify Twilio's signature themselves.
for fn in "${FUNCTIONS[@]}"; do
  if ! awk -v section="[functions.$fn]" '
      $0 == section { inside = 1; next }
      /^\[/ { inside = 0 }
      inside && /^[[:space:]]*verify_jwt[[:space:]]*=[[:space:]]*false/ { found = 1 }
      END { exit found ? 0 : 1 }
    ' supabase/config.toml 2>/dev/null; then
    problem "supabase/config.toml must set verify_jwt = false under [functions.$fn] (Twilio sends no JWT)"
  fi
done

needed_tools=(curl openssl)
[[ -n $(setting TWILIO_PHONE_NUMBER) ]] && needed_tools+=(node)
for tool in "${needed_tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || problem "$tool is not installed"
done

if ((${#problems[@]} > 0)); then
  for message in "${problems[@]}"; do
    printf 'deploy: %s\n' "$message" >&2
  done
  printf 'deploy: nothing was changed\n' >&2
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# Helpers for the steps
# ---------------------------------------------------------------------------------------------

functions_url=$(setting PUBLIC_FUNCTIONS_URL)
functions_url=${functions_url:-https://$project_ref.supabase.co/functions/v1}
functions_url=${functions_url%/}
frontdoor_url="$functions_url/voice-frontdoor"
status_callback_url="$functions_url/voice-action?route=call-status$STATUS_CALLBACK_OVERRIDES"
stream_url="wss://${functions_url#*://}/voice-stream"
twilio_base=$(setting TWILIO_API_BASE_URL)
twilio_base=${twilio_base:-https://api.twilio.com}
twilio_base=${twilio_base%/}
account_sid=$(setting TWILIO_ACCOUNT_SID)
auth_token=$(setting TWILIO_AUTH_TOKEN)

# Values of keys that hold credentials are never printed.
is_secret_key() {
  [[ $1 =~ (TOKEN|SECRET|KEY|PASSWORD|CREDENTIAL) ]]
}

# Prints a Supabase CLI command as it runs (or would run) it, then runs it unless --dry-run.
supabase() {
  local shown=supabase arg
  for arg in "$@"; do
    shown+=" $(printf '%q' "$arg")"
  done
  printf '+ %s\n' "$shown"
  ((dry_run)) && return 0
  "${supabase_cmd[@]}" "$@"
}

temp_dir=$(mktemp -d)
trap 'rm -rf "$temp_dir"' EXIT

# curl reading its Basic auth from stdin, so the auth token never appears in a process list.
twilio_curl() {
  local user="$account_sid:$auth_token"
  user=${user//\\/\\\\}
  user=${user//\"/\\\"}
  printf 'user = "%s"\n' "$user" |
    curl --silent --show-error --max-time 30 --config - --output "$temp_dir/twilio.json" \
      --write-out '%{http_code}' "$@"
}

# Field `$1` of Twilio's JSON answer (e.g. its error message), empty when absent.
twilio_json_field() {
  node -e '
    try {
      const body = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      process.stdout.write(String(body[process.argv[2]] ?? ""));
    } catch {}
  ' "$temp_dir/twilio.json" "$1"
}

# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------

if ((dry_run)); then
  printf 'Dry run: nothing below is executed.\n'
fi
printf 'Project %s (from %s), functions at %s\n' "$project_ref" "$ref_source" "$functions_url"

step "Link the project"
supabase link --project-ref "$project_ref" --yes

step "Apply new migrations"
supabase db push --remote --yes

step "Apply the org files (supabase/orgs/*.toml)"
shopt -s nullglob
org_files=(supabase/orgs/*.toml)
shopt -u nullglob
db_url=${SUPABASE_DB_URL:-$(setting SUPABASE_DB_URL)}
if ((${#org_files[@]} == 0)); then
  printf '    none yet: see docs/operating.md, "Put your business on it"\n'
elif [[ -z $db_url ]]; then
  printf '    skipped: set SUPABASE_DB_URL to the project'"'"'s connection string (Dashboard > Connect) to apply %s\n' \
    "${org_files[*]}"
else
  org_args=(apply "${org_files[@]}")
  # A dry run still reads the database: the diff is applied in a transaction rolled back.
  ((dry_run)) && org_args+=(--dry-run)
  printf '+ deno run -A scripts/org.ts %s --database-url %s\n' "${org_args[*]}" \
    "$(printf '%s' "$db_url" | sed -E 's#(://[^:/@]*):[^@]*@#\1:****@#')"
  "${deno_cmd[@]}" run -A "$ROOT_DIR/scripts/org.ts" "${org_args[@]}" --database-url "$db_url" ||
    die "the org files were not applied (see above); the database is unchanged by this step"
fi

step "Set the functions' secrets"
secrets_file="$temp_dir/secrets.env"
: >"$secrets_file"
chmod 600 "$secrets_file"
sent=()
for key in "${product_keys[@]}"; do
  [[ -n $(setting "$key") ]] || continue
  printf '%s\n' "${raw_lines[$key]}" >>"$secrets_file"
  sent+=("$key")
done
skipped=()
for key in "${!settings[@]}"; do
  [[ " ${sent[*]} " == *" $key "* ]] && continue
  [[ -n ${settings[$key]} ]] && skipped+=("$key")
done
for key in "${sent[@]}"; do
  if is_secret_key "$key"; then
    printf '    %s=****\n' "$key"
  else
    printf '    %s=%s\n' "$key" "$(setting "$key")"
  fi
done
if ((${#skipped[@]} > 0)); then
  mapfile -t skipped < <(printf '%s\n' "${skipped[@]}" | LC_ALL=C sort)
  printf '    not sent (platform-set, local-only or unknown): %s\n' "${skipped[*]}"
fi
supabase secrets set --env-file "$secrets_file" --yes

step "Deploy the functions (verify_jwt = false from supabase/config.toml)"
deploy_flags=()
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  printf '    Docker is not running: bundling on Supabase (--use-api)\n'
  deploy_flags+=(--use-api)
fi
supabase functions deploy "${FUNCTIONS[@]}" "${deploy_flags[@]}" --yes

phone_number=$(setting TWILIO_PHONE_NUMBER)
if [[ -n $phone_number ]]; then
  step "Point Twilio number $phone_number at the functions"
  numbers_url="$twilio_base/$TWILIO_API_VERSION/Accounts/$account_sid/IncomingPhoneNumbers"
  update_params=(
    "VoiceUrl=$frontdoor_url"
    "VoiceMethod=POST"
    "StatusCallback=$status_callback_url"
    "StatusCallbackMethod=POST"
  )
  encoded_number=${phone_number/+/%2B}
  printf '+ GET %s.json?PhoneNumber=%s (Basic auth %s:****)\n' "$numbers_url" "$encoded_number" \
    "$account_sid"
  number_sid="<sid of $phone_number>"
  if ((!dry_run)); then
    status=$(twilio_curl --get --data-urlencode "PhoneNumber=$phone_number" "$numbers_url.json") ||
      die "cannot reach Twilio at $twilio_base"
    if [[ $status == 401 ]]; then
      die "Twilio refused TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN (HTTP 401)"
    elif [[ $status != 200 ]]; then
      die "Twilio answered HTTP $status listing numbers: $(twilio_json_field message)"
    fi
    number_sid=$(node -e '
      const body = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const match = (body.incoming_phone_numbers ?? []).find((n) => n.phone_number === process.argv[2]);
      process.stdout.write(match ? match.sid : "");
    ' "$temp_dir/twilio.json" "$phone_number")
    [[ -n $number_sid ]] ||
      die "TWILIO_PHONE_NUMBER $phone_number is not a number of Twilio account $account_sid"
  fi
  printf '+ POST %s/%s.json (Basic auth %s:****)\n' "$numbers_url" "$number_sid" "$account_sid"
  printf '    %s\n' "${update_params[@]}"
  if ((!dry_run)); then
    form=()
    for param in "${update_params[@]}"; do
      form+=(--data-urlencode "$param")
    done
    status=$(twilio_curl "${form[@]}" "$numbers_url/$number_sid.json") ||
      die "cannot reach Twilio at $twilio_base"
    [[ $status == 200 ]] ||
      die "Twilio answered HTTP $status updating $phone_number: $(twilio_json_field message)"
    printf '    Twilio number %s (%s) now calls voice-frontdoor\n' "$phone_number" "$number_sid"
  fi
else
  step "No TWILIO_PHONE_NUMBER: set the number's webhooks in Twilio's console (URLs below)"
fi

step "Smoke test: a Twilio-signed call to voice-frontdoor must answer <Connect><Stream>"
smoke_params=(
  "AccountSid=$account_sid"
  "ApiVersion=$TWILIO_API_VERSION"
  "CallSid=$SMOKE_CALL_SID"
  "CallStatus=ringing"
  "Called=$SMOKE_NUMBER"
  "Caller=$SMOKE_NUMBER"
  "Direction=inbound"
  "From=$SMOKE_NUMBER"
  "To=$SMOKE_NUMBER"
)
printf '+ POST %s (X-Twilio-Signature ****)\n' "$frontdoor_url"
printf '    %s\n' "${smoke_params[@]}"
if ((!dry_run)); then
  # Twilio's signature: base64(HMAC-SHA1(auth token, URL + each parameter, sorted by name, as
  # name + value)). openssl takes the key as an argument: the token is visible to this machine's
  # process list for the few milliseconds openssl runs.
  signed_data=$frontdoor_url
  while IFS= read -r param; do
    signed_data+="${param%%=*}${param#*=}"
  done < <(printf '%s\n' "${smoke_params[@]}" | LC_ALL=C sort -t '=' -k 1,1)
  signature=$(printf '%s' "$signed_data" | openssl dgst -sha1 -hmac "$auth_token" -binary |
    openssl base64 -A)
  form=()
  for param in "${smoke_params[@]}"; do
    form+=(--data-urlencode "$param")
  done
  body_file="$temp_dir/smoke.xml"
  for ((attempt = 1; ; attempt++)); do
    status=$(curl --silent --max-time 20 --output "$body_file" --write-out '%{http_code}' \
      --header "X-Twilio-Signature: $signature" "${form[@]}" "$frontdoor_url") || status=000
    # A cold start or a deploy still rolling out answers 5xx or nothing: try again.
    if [[ ($status == 000 || $status == 5*) ]] && ((attempt < SMOKE_ATTEMPTS)); then
      sleep "$SMOKE_RETRY_DELAY_SECONDS"
      continue
    fi
    break
  done
  if [[ $status == 403 ]]; then
    die "voice-frontdoor refused the signature (HTTP 403): PUBLIC_FUNCTIONS_URL must be the exact public base Twilio calls ($functions_url), and TWILIO_AUTH_TOKEN the account's current token"
  elif [[ $status != 200 ]]; then
    die "voice-frontdoor answered HTTP $status at $frontdoor_url: see its logs (npx supabase logs --remote --search voice-frontdoor)"
  elif ! grep -q '<Connect' "$body_file" || ! grep -q '<Stream' "$body_file"; then
    die "voice-frontdoor answered without <Connect><Stream> (the apology?): search its logs for config_invalid or frontdoor_failed"
  fi
  printf '    voice-frontdoor answered <Connect><Stream> TwiML\n'
fi

step "Done"
((dry_run)) && printf 'Dry run: nothing was changed.\n'
printf '  Voice URL (A call comes in, POST): %s\n' "$frontdoor_url"
printf '  Call status callback (POST):       %s\n' "$status_callback_url"
printf '  Media stream (from TwiML):         %s\n' "$stream_url"
printf '  Tool calls and SMS status:         %s/voice-action\n' "$functions_url"
printf '  Logs of one call: npx supabase logs --remote --search <traceId or CallSid>\n'
