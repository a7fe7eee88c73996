#!/bin/sh
# azd preprovision hook: the checks that Azure would otherwise make halfway
# through a deployment, made before it starts.
#
# 1. The region: Flex Consumption and its `custom` runtime (kvaudit is a
#    custom handler) are offered only in some regions. If Azure CLI says the
#    region lacks either, stop here with the regions to choose from. If
#    Azure CLI cannot say (an older version without the command), warn and
#    go on: Azure will tell.
# 2. The vaults: Azure Monitor refuses a second diagnostic setting with the
#    same category and destination. A vault that already sends AuditEvent to
#    the chosen logs account through a setting of its own needs no kvaudit
#    setting (its logs land in the same container), so it is passed to the
#    template in KVAUDIT_VAULTS_ALREADY_LOGGING and skipped there. A vault
#    whose settings cannot be listed keeps its place: the template tries,
#    and Azure says why if it cannot. Nothing about one vault stops the
#    deployment of the others.
#
# Its paths do not depend on the directory it runs from. Without azd, run
# it with the same variables set; it prints the value to pass as the
# template's vaultsAlreadyLogging parameter.
set -eu

KEY_VAULT_IDS="${KVAUDIT_KEY_VAULT_IDS:-}"
LOCATION="${AZURE_LOCATION:-}"
# The logs account: the one named, else the one a previous provision of
# this environment created (an output azd keeps), else none yet (a new
# account, which no vault can already log to).
LOGS_ACCOUNT="${KVAUDIT_LOGS_STORAGE_ACCOUNT:-${AUDIT_LOGS_STORAGE_ACCOUNT:-}}"
# kvaudit's own setting, from a previous provision: the template owns it.
OWN_SETTING="${AUDIT_DIAGNOSTIC_SETTING_NAME:-}"

lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# ---- 1. region

# normalize turns "West Europe" or "westeurope" into "westeurope".
normalize() { lower "$1" | tr -d ' '; }

if [ -z "$LOCATION" ]; then
  echo "preprovision: AZURE_LOCATION is not set yet: the Flex Consumption region check is skipped (azd asks for it next)"
else
  loc=$(normalize "$LOCATION")
  if regions=$(az functionapp list-flexconsumption-locations --query "[].name" --output tsv 2>/dev/null); then
    found=no
    for r in $(printf '%s\n' "$regions" | tr ' ' '_'); do
      [ "$(normalize "$(printf '%s' "$r" | tr '_' ' ')")" = "$loc" ] && found=yes
    done
    if [ "$found" = no ]; then
      echo "preprovision: Flex Consumption is not offered in $LOCATION. Regions that offer it (az functionapp list-flexconsumption-locations):" >&2
      printf '%s\n' "$regions" | sed 's/^/  /' >&2
      echo "Choose one: azd env set AZURE_LOCATION <region>" >&2
      exit 1
    fi
    if versions=$(az functionapp list-flexconsumption-runtimes --location "$loc" --runtime custom --query "[].version" --output tsv 2>/dev/null); then
      if [ -z "$versions" ]; then
        echo "preprovision: Flex Consumption in $LOCATION does not offer the custom runtime kvaudit runs on (az functionapp list-flexconsumption-runtimes --location $loc --runtime custom lists nothing). Choose another region: azd env set AZURE_LOCATION <region>" >&2
        exit 1
      fi
      echo "preprovision: $LOCATION offers Flex Consumption with the custom runtime ($(printf '%s' "$versions" | tr '\n' ' '))"
    else
      echo "preprovision: warning: could not list Flex Consumption runtimes in $LOCATION (az functionapp list-flexconsumption-runtimes failed); going on" >&2
    fi
  else
    echo "preprovision: warning: could not list Flex Consumption regions (az functionapp list-flexconsumption-locations failed: an Azure CLI without it?); going on" >&2
  fi
fi

# ---- 2. vaults already logging to the logs account

# One row per diagnostic setting: its name, its storage account id and how
# many of its enabled log entries carry AuditEvent (by category, or by the
# category groups that hold it: audit, allLogs). (value || @) reads both
# shapes az has printed: a list, and {"value": [...]} in older versions.
QUERY='(value || @)[].[name, storageAccountId || `""`, length((logs || `[]`)[?enabled && (category == `"AuditEvent"` || categoryGroup == `"audit"` || categoryGroup == `"allLogs"`)])]'

already=""
ids=$(printf '%s' "$KEY_VAULT_IDS" | tr ',' '\n')
bad=""
for id in $ids; do
  case "$(lower "$id")" in
  /subscriptions/*/resourcegroups/*/providers/microsoft.keyvault/vaults/*) ;;
  *) bad="$bad $id" ;;
  esac
done
if [ -n "$bad" ]; then
  echo "preprovision: KVAUDIT_KEY_VAULT_IDS holds what is not a Key Vault resource id (/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.KeyVault/vaults/<name>):$bad" >&2
  exit 1
fi

if [ -n "$LOGS_ACCOUNT" ]; then
  tab=$(printf '\t')
  for id in $ids; do
    if ! rows=$(az monitor diagnostic-settings list --resource "$id" --query "$QUERY" --output tsv 2>/dev/null); then
      echo "preprovision: warning: could not list the diagnostic settings of $id; kvaudit's setting will be made there as asked" >&2
      continue
    fi
    reuse=""
    while IFS="$tab" read -r name account count; do
      [ -n "$name" ] || continue
      [ "$name" != "$OWN_SETTING" ] || continue
      [ "${count:-0}" -gt 0 ] 2>/dev/null || continue
      if [ "$(lower "${account##*/}")" = "$(lower "$LOGS_ACCOUNT")" ]; then
        reuse="$name"
      fi
    done <<EOF
$rows
EOF
    if [ -n "$reuse" ]; then
      echo "preprovision: ${id##*/} already sends AuditEvent to $LOGS_ACCOUNT (diagnostic setting $reuse): kvaudit reads those logs and makes no setting of its own there"
      already="${already:+$already,}$id"
    fi
  done
fi

if command -v azd >/dev/null 2>&1; then
  azd env set "KVAUDIT_VAULTS_ALREADY_LOGGING=$already"
else
  echo "preprovision: without azd, pass vaultsAlreadyLogging='$already' to the deployment"
fi
