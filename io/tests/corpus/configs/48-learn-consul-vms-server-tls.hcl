# -----------------------------+
# agent-server-tls.hcl         |
# -----------------------------+

## TLS Encryption
tls {
  # defaults { }
  https {
    ca_file   = "/etc/consul.d/consul-agent-ca.pem"
    cert_file = "/etc/consul.d/consul-agent.pem"
    key_file  = "/etc/consul.d/consul-agent-key.pem"
    verify_incoming        = false
    verify_outgoing        = true
  }
  internal_rpc {
    ca_file   = "/etc/consul.d/consul-agent-ca.pem"
    cert_file = "/etc/consul.d/consul-agent.pem"
    key_file  = "/etc/consul.d/consul-agent-key.pem"
    verify_incoming        = true
    verify_outgoing        = true
    verify_server_hostname = true
  }
  # grpc {
  #   verify_incoming        = false
  #   use_auto_cert = false
  # }
}

# ## TLS Encryption (requires cert files to be present on the server nodes)
# tls {
#   defaults {
#     ca_file   = "/etc/consul.d/consul-agent-ca.pem"
#     cert_file = "/etc/consul.d/consul-agent.pem"
#     key_file  = "/etc/consul.d/consul-agent-key.pem"
#     verify_outgoing        = true
#     verify_incoming        = true
#   }
#   https {
#     verify_incoming        = false
#   }
#   internal_rpc {
#     verify_server_hostname = true
#   }
#   grpc {
#     verify_incoming        = false
#     use_auto_cert = true
#   }
# }

# Enable auto-encrypt for server nodes
auto_encrypt {
  allow_tls = true
}
