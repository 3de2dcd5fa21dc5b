# Copyright (c) HashiCorp, Inc.
# SPDX-License-Identifier: MPL-2.0

# Cut to what 59-consul-guides-service-hcl-commas.hcl does not hold: the source repeats that
# file's service (address, port, tags, checks) before this connect block.
service {
  name = "web_client"

  connect = {
    proxy = {
      config = {
        upstreams = [
          {
            destination_name = "listing",
            local_bind_port = 10002
          },
          {
            destination_name = "product"
            local_bind_port  = 10001
          }
        ]
      }
    }
  }
}
