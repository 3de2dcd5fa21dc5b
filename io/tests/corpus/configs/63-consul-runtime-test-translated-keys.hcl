service = {
	name = "a"
	port = 80
	enable_tag_override = true
	tagged_addresses = {
		wan = {
			address = "198.18.3.4"
			port = 443
		}
	}
	check = {
		id = "x"
		name = "y"
		DockerContainerID = "z"
		DeregisterCriticalServiceAfter = "10s"
		ScriptArgs = ["a", "b"]
		Interval = "2s"
	}
}
