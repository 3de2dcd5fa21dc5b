# -----------------------------+
# consul.hcl                   |
# -----------------------------+

# Node name
node_name = "consul-server-0"

# Data Persistence
data_dir = "/opt/consul/"

# Logging
log_level = "DEBUG"
enable_syslog = false

## Disable script checks
enable_script_checks = false

## Enable local script checks
enable_local_script_checks = true

## Automatically reload reloadable configuration
auto_reload_config = true

