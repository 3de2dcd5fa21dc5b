telemetry {
  dogstatsd_addr = "localhost:8125"
  disable_hostname = true
}
