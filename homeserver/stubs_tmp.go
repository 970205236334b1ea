package homeserver

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Temporary: handlers the lead is writing right now.
func notYet(c echo.Context) error {
	return merr(http.StatusNotImplemented, "M_UNRECOGNIZED", "not implemented yet")
}

func (s *Server) createRoom(c echo.Context) error          { return notYet(c) }
func (s *Server) joinRoomByIDOrAlias(c echo.Context) error { return notYet(c) }
func (s *Server) joinRoom(c echo.Context) error            { return notYet(c) }
func (s *Server) membershipOf(m string) echo.HandlerFunc   { return notYet }
func (s *Server) leaveRoom(c echo.Context) error           { return notYet(c) }
func (s *Server) forgetRoom(c echo.Context) error          { return notYet(c) }
func (s *Server) getState(c echo.Context) error            { return notYet(c) }
func (s *Server) getStateEvent(c echo.Context) error       { return notYet(c) }
func (s *Server) putState(c echo.Context) error            { return notYet(c) }
func (s *Server) sendEvent(c echo.Context) error           { return notYet(c) }
func (s *Server) redactEvent(c echo.Context) error         { return notYet(c) }
func (s *Server) getEvent(c echo.Context) error            { return notYet(c) }
func (s *Server) messages(c echo.Context) error            { return notYet(c) }
func (s *Server) eventContext(c echo.Context) error        { return notYet(c) }
func (s *Server) members(c echo.Context) error             { return notYet(c) }
func (s *Server) joinedMembers(c echo.Context) error       { return notYet(c) }
func (s *Server) joinedRooms(c echo.Context) error         { return notYet(c) }
func (s *Server) getAlias(c echo.Context) error            { return notYet(c) }
func (s *Server) putAlias(c echo.Context) error            { return notYet(c) }
func (s *Server) deleteAlias(c echo.Context) error         { return notYet(c) }
func (s *Server) getVisibility(c echo.Context) error       { return notYet(c) }
func (s *Server) putVisibility(c echo.Context) error       { return notYet(c) }
func (s *Server) publicRooms(c echo.Context) error         { return notYet(c) }
func (s *Server) sync(c echo.Context) error                { return notYet(c) }
func (s *Server) putTyping(c echo.Context) error           { return notYet(c) }
func (s *Server) postReceipt(c echo.Context) error         { return notYet(c) }
func (s *Server) postReadMarkers(c echo.Context) error     { return notYet(c) }
func (s *Server) sendToDevice(c echo.Context) error        { return notYet(c) }
func (s *Server) getAccountData(c echo.Context) error      { return notYet(c) }
func (s *Server) putAccountData(c echo.Context) error      { return notYet(c) }
