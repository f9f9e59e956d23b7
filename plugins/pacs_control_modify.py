"""The built-in control commands that change stored objects (manual
appendix 6: modification of dicom objects); see pacscore.control.modify and
pacscore.control.attach.

Only instances live here; ``getPlugins(IControlCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.control import attach, modify

modifyPatID = modify.ModifyPatID()
copyPatID = modify.CopyPatID()
anonymize = modify.Anonymize()
modifyImage = modify.ModifyImage()
modifyStudy = modify.ModifyStudy()
modifySeries = modify.ModifySeries()
mergeStudy = modify.MergeStudy()
mergeStudyFile = modify.MergeStudyFile()
mergeSeries = modify.MergeSeries()
mergeSeriesFile = modify.MergeSeriesFile()

attachAnyToPatient = attach.AttachAnyToPatient()
attachAnyToStudy = attach.AttachAnyToStudy()
attachAnyToSeries = attach.AttachAnyToSeries()
attachRTPlanToRTStruct = attach.AttachRTPlanToRTStruct()
