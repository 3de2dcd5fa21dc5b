# Copyright (c) HashiCorp, Inc.
# SPDX-License-Identifier: MPL-2.0

client_addr      = "0.0.0.0"
data_dir         = "/opt/consul"
datacenter       = "east"
log_level        = "INFO"
server           = false
acl_datacenter   = "east"
acl_down_policy  = "extend-cache"
