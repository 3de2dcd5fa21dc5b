# -----------------------------+
# consul.hcl                   |
# -----------------------------+

server = false
datacenter = "dc1"
domain = "consul" 
node_name = "hashicups-db-0"

# Logging
log_level = "DEBUG"
enable_syslog = false

# Data persistence
data_dir = "/opt/consul/"

## Networking 
client_addr = "127.0.0.1"
bind_addr   = "{{ GetInterfaceIP \"eth0\" }} {{ GetInterfaceIP \"enX0\" }}"

# Join other Consul agents
retry_join = [ "consul-server-0", "consul.service.dc1.consul" ]

# DNS recursors
recursors = ["1.1.1.1"]

# Ports
ports {
  http      = 8500
  https     = -1
  # https   = 443
  grpc      = 8502
  # grpc_tls  = 8503
  grpc_tls  = -1
  dns       = 8600
}

# Enable Consul service mesh
connect {
  enabled = true
}

## Disable script checks
enable_script_checks = false

## Enable local script checks
enable_local_script_checks = true

## Enable central service config
enable_central_service_config = true

## Automatically reload reloadable configuration
auto_reload_config = true

## TLS Encryption
tls {
  # defaults { }
  https {
    ca_file   = "/etc/consul.d/consul-agent-ca.pem"
    verify_incoming        = false
    verify_outgoing        = true
  }
  internal_rpc {
    ca_file   = "/etc/consul.d/consul-agent-ca.pem"
    verify_incoming        = true
    verify_outgoing        = true
    verify_server_hostname = true
  }
}

auto_encrypt {
  tls = true
}

## ACL
acl {
  enabled        = true
  default_policy = "deny"
  enable_token_persistence = true
}

telemetry {
  prometheus_retention_time = "60s"
  disable_hostname = true
  enable_host_metrics = true
}
