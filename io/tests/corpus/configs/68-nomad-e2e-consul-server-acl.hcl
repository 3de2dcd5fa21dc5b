# Copyright (c) HashiCorp, Inc.
# SPDX-License-Identifier: BUSL-1.1

log_level      = "DEBUG"
data_dir       = "/opt/consul/data"
bind_addr      = "{{ GetPrivateIP }}"
advertise_addr = "{{ GetPrivateIP }}"
client_addr    = "0.0.0.0"

server           = true
bootstrap_expect = 1

ui_config {
  enabled = true
}

acl {
  enabled        = true
  default_policy = "deny"
  tokens {
    initial_management = "3f1c6e2a-8b7d-4c5e-9a1f-2d3e4b5c6a7f"
    agent              = "7b9e2d4c-1a3f-4e5d-8c6b-9f0a1b2c3d4e"
    default            = "7b9e2d4c-1a3f-4e5d-8c6b-9f0a1b2c3d4e"
  }
}

retry_join = ["provider=aws tag_key=ConsulAutoJoin tag_value=auto-join-e2e-1a2b"]

tls {
  defaults {
    ca_file   = "/etc/consul.d/ca.pem"
    cert_file = "/etc/consul.d/cert.pem"
    key_file  = "/etc/consul.d/cert.key.pem"
  }
}

connect {
  enabled = true
}

service {
  name = "consul"
}

ports {
  https    = 8501
  grpc_tls = 8502
}
