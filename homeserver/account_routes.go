package homeserver

import "net/http"

// accountRoutes registers the account-side endpoints (see account_*.go).
// /voip/turnServer is registered in routes.go.
func (s *Server) accountRoutes(a api) {
	a.authed(http.MethodGet, "/capabilities", s.capabilities)
	a.authed(http.MethodPost, "/account/password", s.changePassword)

	a.authed(http.MethodGet, "/devices", s.listDevices)
	a.authed(http.MethodGet, "/devices/:deviceId", s.getDevice)
	a.authed(http.MethodPut, "/devices/:deviceId", s.putDevice)
	a.authed(http.MethodDelete, "/devices/:deviceId", s.deleteDevice)
	a.authed(http.MethodPost, "/delete_devices", s.deleteDevices)

	// Reading profiles needs no access token (spec: "GET /profile/{userId}").
	a.open(http.MethodGet, "/profile/:userId", s.getProfile)
	for _, f := range []string{"displayname", "avatar_url"} {
		a.open(http.MethodGet, "/profile/:userId/"+f, s.getProfileField(f))
		a.authed(http.MethodPut, "/profile/:userId/"+f, s.putProfileField(f))
	}

	a.authed(http.MethodPost, "/user/:userId/filter", s.postFilter)
	a.authed(http.MethodGet, "/user/:userId/filter/:filterId", s.getFilter)

	a.authed(http.MethodGet, "/pushrules", s.getAllPushRules(false))
	a.authed(http.MethodGet, "/pushrules/", s.getAllPushRules(false))
	a.authed(http.MethodGet, "/pushrules/global", s.getAllPushRules(true))
	a.authed(http.MethodGet, "/pushrules/global/", s.getAllPushRules(true))
	a.authed(http.MethodGet, "/pushrules/global/:kind/:ruleId", s.getPushRule(""))
	a.authed(http.MethodPut, "/pushrules/global/:kind/:ruleId", s.putPushRule)
	a.authed(http.MethodDelete, "/pushrules/global/:kind/:ruleId", s.deletePushRule)
	a.authed(http.MethodGet, "/pushrules/global/:kind/:ruleId/enabled", s.getPushRule("enabled"))
	a.authed(http.MethodPut, "/pushrules/global/:kind/:ruleId/enabled", s.putPushRuleEnabled)
	a.authed(http.MethodGet, "/pushrules/global/:kind/:ruleId/actions", s.getPushRule("actions"))
	a.authed(http.MethodPut, "/pushrules/global/:kind/:ruleId/actions", s.putPushRuleActions)

	a.authed(http.MethodPost, "/keys/upload", s.keysUpload)
	a.authed(http.MethodPost, "/keys/query", s.keysQuery)
	a.authed(http.MethodPost, "/keys/claim", s.keysClaim)
	a.authed(http.MethodGet, "/keys/changes", s.keysChanges)
	// mautrix-go (v0.31) sends POST; accept it too.
	a.authed(http.MethodPost, "/keys/changes", s.keysChanges)
	a.authed(http.MethodPost, "/keys/device_signing/upload", s.deviceSigningUpload)
	a.authed(http.MethodPost, "/keys/signatures/upload", s.signaturesUpload)

	a.authed(http.MethodPost, "/user/:userId/openid/request_token", s.requestOpenIDToken)

	a.e.GET("/_synapse/admin/v1/register", s.adminRegisterNonce)
	a.e.POST("/_synapse/admin/v1/register", s.adminRegister)
}
